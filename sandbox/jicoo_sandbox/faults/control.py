"""The fault control endpoints: read and replace the fault profile, read and clear the request log.

``FaultControl`` is the outermost raw ASGI middleware of the sandbox app. It wraps the
``FaultInjector`` (injector.py) and answers, without a key:

- ``GET /_sandbox/faults``: the active profile and its counters;
- ``POST /_sandbox/faults``: replace the profile (JSON, see profile.py; ``{}`` clears it),
  400 ``invalid_fault_profile`` naming the offending key;
- ``GET /_sandbox/requests``: the injector's log of API requests (no key values);
- ``POST /_sandbox/requests/clear``: empty that log.

Every other request goes on to the injector. It imports no client code.
"""

import json
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from jicoo_sandbox.faults.injector import FaultInjector
from jicoo_sandbox.faults.profile import FaultProfile, FaultProfileError
from jicoo_sandbox.faults.responses import error_body, json_response, read_body

if TYPE_CHECKING:
    from jicoo_sandbox.config import SandboxConfig
    from jicoo_sandbox.store import SandboxStore

__all__ = ["FaultControl"]


class FaultControl:
    """Raw ASGI middleware: the ``/_sandbox`` fault and request-log endpoints over an injector."""

    def __init__(self, app: ASGIApp, *, store: "SandboxStore", config: "SandboxConfig") -> None:
        self.injector = FaultInjector(app, store=store, config=config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not await self._control(scope, receive, send):
            await self.injector(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a control request; False when the request is not one."""
        method, path = scope["method"], scope["path"]
        if path == "/_sandbox/faults" and method == "GET":
            await self._send_state(send)
        elif path == "/_sandbox/faults" and method == "POST":
            raw = await read_body(receive)
            try:
                obj = json.loads(raw or b"{}")
                self.injector.set_profile(FaultProfile.from_mapping(obj))
            except (ValueError, FaultProfileError) as exc:
                await json_response(send, 400, error_body("invalid_fault_profile", str(exc)))
                return True
            await self._send_state(send)
        elif path == "/_sandbox/requests" and method == "GET":
            data = self.injector.request_log()
            body = json.dumps({"data": data, "errors": {}, "count": len(data)}).encode()
            await json_response(send, 200, body)
        elif path == "/_sandbox/requests/clear" and method == "POST":
            await read_body(receive)
            self.injector.clear_request_log()
            await json_response(send, 200, json.dumps({"data": None, "errors": {}}).encode())
        else:
            return False
        return True

    async def _send_state(self, send: Send) -> None:
        injector = self.injector
        data = {"profile": injector.profile.to_mapping(), "counters": injector.counters()}
        await json_response(send, 200, json.dumps({"data": data, "errors": {}}).encode())
