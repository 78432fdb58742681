"""The Jicoo sandbox: a fake Jicoo API (seeded data, journal, faults) served on loopback."""

from jicoo_sandbox.app import create_app
from jicoo_sandbox.config import SandboxConfig
from jicoo_sandbox.fault_profile import FaultProfile
from jicoo_sandbox.server import SandboxProcess, SandboxServer

__all__ = ["FaultProfile", "SandboxConfig", "SandboxProcess", "SandboxServer", "create_app"]
