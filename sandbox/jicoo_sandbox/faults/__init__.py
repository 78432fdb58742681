"""Everything the sandbox does wrong on purpose: the profile, its injector and control endpoints."""

from jicoo_sandbox.faults.connection import TRANSPORT_EXTENSION
from jicoo_sandbox.faults.control import FaultControl
from jicoo_sandbox.faults.injector import FAULT_EXTENSION, key_hash
from jicoo_sandbox.faults.profile import FaultProfile, FaultProfileError

__all__ = [
    "FAULT_EXTENSION",
    "TRANSPORT_EXTENSION",
    "FaultControl",
    "FaultProfile",
    "FaultProfileError",
    "key_hash",
]
