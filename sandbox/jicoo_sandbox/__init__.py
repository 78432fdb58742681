"""The Jicoo sandbox: a fake Jicoo API (seeded data, journal, faults) served on loopback."""

from jicoo_sandbox.app import create_app
from jicoo_sandbox.config import SandboxConfig, WebhookOptions
from jicoo_sandbox.faults import FaultProfile
from jicoo_sandbox.server import SandboxProcess, SandboxServer

__all__ = [
    "FaultProfile",
    "SandboxConfig",
    "SandboxProcess",
    "SandboxServer",
    "WebhookOptions",
    "create_app",
]
