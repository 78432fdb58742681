"""A TCP load balancer on loopback, as one would stand in front of several webhook receivers.

Each new connection goes to the next backend, round robin, among those whose ``GET /healthz``
answered 200 at the last probe (every ``PROBE_S``); a backend that refuses the connection is
skipped for the next one. Bytes are piped both ways as they come: no HTTP of its own.
"""

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence
from typing import Final

import httpx

__all__ = ["Balancer"]

PROBE_S: Final = 0.1
PROBE_TIMEOUT_S: Final = 1.0
START_TIMEOUT_S: Final = 10.0
CHUNK: Final = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


class Balancer:
    """``url`` forwards to ``backends`` (ports on 127.0.0.1); ``probes`` counts health probes
    per backend and answer (``(port, 200)``, ``(port, None)`` for no answer)."""

    def __init__(self, backends: Sequence[int]) -> None:
        self.backends = list(backends)
        self.healthy: set[int] = set()
        self.probes: dict[tuple[int, int | None], int] = {}
        self.connections: dict[int, int] = dict.fromkeys(self.backends, 0)
        self._turn = itertools.cycle(range(len(self.backends)))
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="balancer", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError("the balancer did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jicoo/webhooks"

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            await self._probe_all(client)
            self._started.set()
            prober = asyncio.create_task(self._probe_forever(client))
            await self._stop.wait()
            prober.cancel()
        server.close()
        await server.wait_closed()

    async def _probe_all(self, client: httpx.AsyncClient) -> None:
        for port in self.backends:
            status: int | None = None
            with contextlib.suppress(httpx.HTTPError):
                status = (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code
            self.probes[(port, status)] = self.probes.get((port, status), 0) + 1
            if status == 200:
                self.healthy.add(port)
            else:
                self.healthy.discard(port)

    async def _probe_forever(self, client: httpx.AsyncClient) -> None:
        while True:
            await asyncio.sleep(PROBE_S)
            await self._probe_all(client)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        for _ in self.backends:
            port = self.backends[next(self._turn)]
            if port not in self.healthy:
                continue
            try:
                backend_r, backend_w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.healthy.discard(port)
                continue
            self.connections[port] += 1
            await asyncio.gather(_pipe(client_r, backend_w), _pipe(backend_r, client_w))
            return
        client_w.close()  # no backend up: the sender sees the connection drop and retries

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)
