"""The receiver's connection bounds that uvicorn does not set, added at the transport edge.

What uvicorn (0.30 to 0.54, read in its source) leaves open, and what this adds:
- it times out only an idle keep-alive connection: one that never sends a request line, or
  sends its head a byte at a time, stays open for good. Here every request head (the first, and
  each one after a response) must arrive within ``head_timeout_s``, else the connection closes;
- ``limit_concurrency`` answers 503 to every request past the cap, valid senders' included, and
  nothing caps open connections, so a thousand slow clients exhaust the process's descriptors
  and asyncio stops accepting. Here at most ``max_connections`` stay open: one more sheds the
  oldest connection that still owes us a request (a slow head or body, or an idle keep-alive),
  so a new sender, whose request arrives at once, is served;
- the head's size is h11's (``h11_max_incomplete_event_size``): httptools, uvicorn's default
  when installed, reads a header of any size, in time that grows faster than its length.

No HTTP is parsed here: uvicorn's ``H11Protocol`` (h11) does it all; this subclass counts
connections, arms timers and closes transports.
"""

import asyncio
import itertools
import logging
import resource
from typing import ClassVar, Final

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

__all__ = ["ConnectionGuard", "guarded_protocol", "usable_connections"]

logger = logging.getLogger(__name__)

# Descriptors the process needs besides connections: the listening socket, the event store,
# logs, the event loop's own.
RESERVED_DESCRIPTORS: Final = 64


def usable_connections(wanted: int) -> int:
    """``wanted``, within what the process may open: its descriptor limit is raised toward the
    hard limit as needed, and the cap lowered below it if even that is not enough (past it,
    asyncio would stop accepting anyone)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    usable = wanted if soft == resource.RLIM_INFINITY else min(wanted, soft - RESERVED_DESCRIPTORS)
    if usable < wanted:
        logger.warning(
            "at most %d connections: the descriptor limit is %d (raise `ulimit -n`)", usable, soft
        )
    return max(usable, 1)


class ConnectionGuard:
    """The connections of one server, and its two bounds."""

    def __init__(self, max_connections: int, head_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        # Open connections (a dict: removal in constant time, a stable order).
        self.open: dict[_GuardedH11Protocol, None] = {}
        self.shed = 0
        self.timed_out = 0
        # Each wait for a request gets the next number: the oldest has the smallest.
        self.turns = itertools.count()

    def admit(self, newcomer: "_GuardedH11Protocol") -> None:
        self.open[newcomer] = None
        if len(self.open) <= self.max_connections:
            return
        live = [c for c in self.open if not c.transport.is_closing()]
        if len(live) <= self.max_connections:
            return
        owing = [c for c in live if c.owes_a_request() and c is not newcomer]
        # Nobody to shed (every other connection has its request in and awaits our answer):
        # the newcomer is closed, and its sender tries again later (webhook senders retry).
        victim = min(owing, key=lambda c: c.waiting_since) if owing else newcomer
        self.shed += 1
        logger.debug("connection cap %d reached: closing the oldest slow one", self.max_connections)
        victim.transport.close()

    def release(self, gone: "_GuardedH11Protocol") -> None:
        self.open.pop(gone, None)


class _GuardedH11Protocol(H11Protocol):
    guard: ClassVar[ConnectionGuard]
    waiting_since: int
    _head_timer: asyncio.TimerHandle | None
    _seen_cycle: object

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._head_timer = None
        self._seen_cycle = None
        self._await_head()
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._note_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()
            self._note_head()  # a pipelined request's head may be in already

    def owes_a_request(self) -> bool:
        """No request of its in our hands: a head or body still arriving, or idle."""
        cycle: RequestResponseCycle | None = self.cycle  # None until the first head
        return cycle is None or cycle.response_complete or cycle.more_body

    def _await_head(self) -> None:
        self._stop_head_timer()
        self.waiting_since = next(self.guard.turns)
        self._head_timer = self.loop.call_later(self.guard.head_timeout_s, self._head_too_slow)

    def _note_head(self) -> None:
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:
            self._seen_cycle = cycle
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.guard.timed_out += 1
            logger.debug("no request head within %.1f s: closing", self.guard.head_timeout_s)
            self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's h11 protocol class, bounded by ``guard`` (pass it as ``Config(http=...)``)."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"guard": guard})
