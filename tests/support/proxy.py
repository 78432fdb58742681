"""A small forward proxy for tests: CONNECT tunnels (as company proxies carry HTTPS), with an
optional Basic credential. It records every request head it reads itself; a tunnel's bytes
are piped, never parsed, so ``heads`` is what a proxy can see of an HTTPS client."""

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator

READ_LIMIT = 64 * 1024
START_TIMEOUT_S = 5.0


class ConnectProxy:
    """``heads``: each request line the proxy received, in order; ``authorizations``: the
    Proxy-Authorization values; ``tunnelled``: bytes piped client to server."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.heads: list[str] = []
        self.authorizations: list[str | None] = []
        self.tunnelled = 0
        self._expected = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            if credentials is not None
            else None
        )
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._server is None:
            raise RuntimeError("the test proxy did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self._ready.set()

        self._loop.run_until_complete(start())
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        self.heads.append(lines[0])
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        authorization = {k.lower(): v for k, v in fields.items()}.get("proxy-authorization")
        self.authorizations.append(authorization)
        method, _, rest = lines[0].partition(" ")
        if self._expected is not None and authorization != self._expected:
            await _reply(writer, b"407 Proxy Authentication Required", b"Proxy-Authenticate: Basic")
            return
        if method != "CONNECT":
            await _reply(writer, b"501 Not Implemented")
            return
        host, _, port = rest.split(" ", 1)[0].rpartition(":")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host.strip("[]"), int(port)
            )
        except (OSError, ValueError):
            await _reply(writer, b"502 Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(
            self._pipe(reader, upstream_writer, count=True),
            self._pipe(upstream_reader, writer, count=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        try:
            while data := await reader.read(READ_LIMIT):
                if count:
                    self.tunnelled += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)


async def _reply(writer: asyncio.StreamWriter, status: bytes, *headers: bytes) -> None:
    lines = [b"HTTP/1.1 " + status, *headers, b"Content-Length: 0", b"Connection: close"]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


@contextlib.contextmanager
def connect_proxy(credentials: tuple[str, str] | None = None) -> Iterator[ConnectProxy]:
    proxy = ConnectProxy(credentials)
    try:
        yield proxy
    finally:
        proxy.close()
