"""Faults of the connection itself: reset, close mid-body, drop after applying, trickle.

They need the request's transport, which server.py hands each request under
``TRANSPORT_EXTENSION`` (plain ASGI has no way to abort a connection).
"""

import asyncio
import socket
import struct
from typing import Final, Protocol, runtime_checkable

import anyio
from starlette.types import Receive, Scope, Send

from jicoo_sandbox.faults.profile import DEFAULT_TRICKLE_CHUNK_BYTES, FaultRule

__all__ = ["TRANSPORT_EXTENSION", "abort", "send_truncated", "trickle"]

# Scope extension key shared with server.py, which puts the transport there.
TRANSPORT_EXTENSION: Final = "jicoo.transport"
# How long an aborted connection may take to be reported lost by uvicorn before we give up.
DISCONNECT_WAIT_S: Final = 5.0
MS_PER_S: Final = 1000.0


async def _disconnected(receive: Receive) -> None:
    """Return once uvicorn reports the connection gone (the request body, if any, is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_disconnect(receive: Receive) -> None:
    """Wait until uvicorn has seen the connection go, so it does not log a half-sent response."""
    with anyio.move_on_after(DISCONNECT_WAIT_S):
        await _disconnected(receive)


@runtime_checkable
class _Transport(Protocol):
    """What we use of an asyncio or uvloop transport (uvloop's is no asyncio.Transport)."""

    def abort(self) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str, default: object = None) -> object: ...


def _transport(scope: Scope) -> _Transport:
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if not isinstance(transport, _Transport):
        raise RuntimeError(
            "this fault needs the connection's transport: serve the sandbox through "
            "jicoo_sandbox.server (TransportHttpToolsProtocol)"
        )
    return transport


@runtime_checkable
class _SocketLike(Protocol):
    """asyncio hands out a TransportSocket wrapper, uvloop a pseudo-socket: both setsockopt."""

    def setsockopt(self, level: int, option: int, value: bytes, /) -> None: ...


async def abort(scope: Scope, receive: Receive, *, reset: bool) -> None:
    """Drop the connection: with ``reset``, RST instead of FIN."""
    transport = _transport(scope)
    if reset:
        sock = transport.get_extra_info("socket")
        if isinstance(sock, socket.socket | _SocketLike):
            # SO_LINGER 0: close() sends RST instead of FIN, what a crashed proxy looks like.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await _wait_disconnect(receive)


async def send_truncated(scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
    """Send half of ``body`` after a start that announced all of it, then close."""
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    _transport(scope).close()  # close, not abort: the half body must reach the client
    await _wait_disconnect(receive)


async def trickle(rule: FaultRule, body: bytes, send: Send, receive: Receive) -> None:
    """Send ``body`` a chunk per interval; stop as soon as the client hangs up (a slow body is
    no reason to keep a dead connection, and the server's shutdown, waiting)."""
    step = rule.chunk_bytes or DEFAULT_TRICKLE_CHUNK_BYTES
    interval = (rule.interval_ms or 0.0) / MS_PER_S
    if not body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    hung_up = asyncio.ensure_future(_disconnected(receive))
    try:
        for offset in range(0, len(body), step):
            last = offset + step >= len(body)
            await send(
                {
                    "type": "http.response.body",
                    "body": body[offset : offset + step],
                    "more_body": not last,
                }
            )
            if not last:
                await asyncio.wait((hung_up,), timeout=interval)
                if hung_up.done():
                    return
    finally:
        hung_up.cancel()
