"""The Jicoo sandbox: a fake Jicoo API (seeded data, journal, faults) served on loopback."""

from jicoo_connector.sandbox.app import create_app
from jicoo_connector.sandbox.config import SandboxConfig
from jicoo_connector.sandbox.faults import FaultProfile
from jicoo_connector.sandbox.server import SandboxProcess, SandboxServer

__all__ = ["FaultProfile", "SandboxConfig", "SandboxProcess", "SandboxServer", "create_app"]
