"""Runs the sandbox app under uvicorn: in a thread (tests), blocking (CLI) or in a child process.

Owns the uvicorn protocol subclass that hands each request its transport so faults can abort.
"""

import contextlib
import gc
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx
import uvicorn
from typing_extensions import Self
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jicoo_sandbox.app import create_app
from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY, SandboxConfig
from jicoo_sandbox.faults import TRANSPORT_EXTENSION, FaultProfile

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from jicoo_sandbox.store import SandboxStore
    from jicoo_sandbox.webhooks import ChurnRunner, WebhookSender

__all__ = ["READY_LINE_PREFIX", "SandboxProcess", "SandboxServer", "serve"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROCESS_START_TIMEOUT_S = 120.0
PROCESS_STOP_TIMEOUT_S = 10.0
READY_POLL_S = 0.005
CONTROL_TIMEOUT_S = 10.0
# cli.py's first stdout line; SandboxProcess parses the base URL out of it.
READY_LINE_PREFIX = "Jicoo sandbox listening on "
# Keep-alive long enough that a paging client reuses connections between pages.
KEEP_ALIVE_S = 30


class TransportHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the transport in every request's scope extensions.

    The fault injector needs it to reset, truncate or drop a connection, which plain ASGI
    cannot express (an ASGI app can only finish or fail a response).
    """

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # on_message_begin builds a fresh scope per request; the cycle reads this same dict.
        self.scope["extensions"] = {TRANSPORT_EXTENSION: self.transport}  # type: ignore[dict-item]


def _uvicorn_config(config: SandboxConfig, host: str, port: int, loop: str) -> uvicorn.Config:
    # Starlette builds middleware on the first request: check the profile now, not then.
    FaultProfile.from_mapping(config.faults)
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        http=TransportHttpToolsProtocol,
        loop=loop,
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def _base_url(server: uvicorn.Server, host: str) -> str:
    sockets = [sock for srv in server.servers for sock in (srv.sockets or ())]
    if not sockets:
        raise RuntimeError("the sandbox server started without a listening socket")
    port = sockets[0].getsockname()[1]
    return f"http://{host}:{port}"


class SandboxServer:
    """The sandbox on a loopback port, served from a background thread.

    >>> with SandboxServer(SandboxConfig(bookings=100)) as sandbox:
    ...     httpx.get(f"{sandbox.base_url}/v1/bookings",
    ...               headers={"X-Jicoo-Api-Key": sandbox.api_key}).status_code
    200
    """

    def __init__(
        self,
        config: SandboxConfig,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        loop: str = "asyncio",
    ) -> None:
        self.config = config
        self.host = host
        self._uvicorn = uvicorn.Server(_uvicorn_config(config, host, port, loop))
        app: Starlette = self._uvicorn.config.app  # type: ignore[assignment]
        self.store: SandboxStore = app.state.store
        self.webhooks: WebhookSender | None = app.state.webhooks
        self.churn: ChurnRunner | None = app.state.churn
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._control: httpx.Client | None = None
        self._failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox server is not running")
        return self._base_url

    @property
    def api_key(self) -> str:
        return self.config.api_keys[0] if self.config.api_keys else DEFAULT_SANDBOX_KEY

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sandbox server is already running")
        thread = threading.Thread(target=self._run, name="jicoo-sandbox", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._uvicorn.started:
            if not thread.is_alive():
                self._thread = None
                raise RuntimeError(
                    f"the sandbox server could not start on {self.host}: {self._failure!r} "
                    "(uvicorn logged why above)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox server did not start within {START_TIMEOUT_S} s")
            time.sleep(READY_POLL_S)
        self._base_url = _base_url(self._uvicorn, self.host)
        self._control = httpx.Client(base_url=self._base_url, timeout=CONTROL_TIMEOUT_S)
        logger.info("sandbox listening on %s", self._base_url)

    def _run(self) -> None:
        # uvicorn answers a failed bind with sys.exit(1): keep it here, report it in start().
        try:
            self._uvicorn.run()
        except SystemExit as exc:
            self._failure = exc

    def stop(self) -> None:
        if self.churn is not None:
            self.churn.close()
        if self.webhooks is not None:
            self.webhooks.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        thread = self._thread
        if thread is None:
            return
        self._uvicorn.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            self._uvicorn.force_exit = True
            thread.join(STOP_TIMEOUT_S)
        self._thread = None
        self._base_url = None
        if thread.is_alive():
            raise RuntimeError("the sandbox server thread did not stop")

    def _post(self, path: str, body: Mapping[str, object]) -> None:
        if self._control is None:
            raise RuntimeError("the sandbox server is not running")
        # Through HTTP so the change happens on the server's own event loop, not this thread.
        response = self._control.post(path, json=dict(body))
        if response.status_code >= httpx.codes.BAD_REQUEST:
            raise ValueError(f"POST {path} refused: {response.text}")

    def set_faults(self, profile: Mapping[str, object]) -> None:
        """Replace the fault profile (see ``faults/profile.py``); ValueError if it is invalid."""
        self._post("/_sandbox/faults", profile)

    def clear_faults(self) -> None:
        self._post("/_sandbox/faults", {})

    def clear_requests(self) -> None:
        self._post("/_sandbox/requests/clear", {})

    def requests(self) -> list[dict[str, object]]:
        """The request log (see ``GET /_sandbox/requests``)."""
        if self._control is None:
            raise RuntimeError("the sandbox server is not running")
        entries: list[dict[str, object]] = self._control.get("/_sandbox/requests").json()["data"]
        return entries

    def reset(self) -> None:
        """Back to the start: seeded data, empty journal, the start fault profile, empty log."""
        self._post("/_sandbox/faults", self.config.faults)
        self.clear_requests()
        # Through the app so the store is reset on the server's loop, between requests.
        self._post("/_sandbox/reset", {})

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: SandboxConfig,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    loop: str = "auto",
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); ``on_ready`` gets the base URL once listening."""
    server = uvicorn.Server(_uvicorn_config(config, host, port, loop))
    # This process only serves: the store's millions of long-lived objects never become garbage,
    # so keep the cyclic GC from walking them all again while requests come in.
    gc.freeze()
    announced = threading.Event()

    def announce_when_started() -> None:
        while not server.started and not server.should_exit:
            time.sleep(READY_POLL_S)
        if server.started:
            on_ready(_base_url(server, host))
        announced.set()

    watcher = threading.Thread(
        target=announce_when_started, name="jicoo-sandbox-ready", daemon=True
    )
    watcher.start()
    try:
        server.run()
    finally:
        server.should_exit = True
        watcher.join(STOP_TIMEOUT_S)


class SandboxProcess:
    """The sandbox as a child process (``jicoo-sandbox serve``): for benchmarks and crash tests.

    >>> with SandboxProcess(bookings=100_000) as sandbox:
    ...     print(sandbox.base_url)
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        seed: int | None = None,
        bookings: int | None = None,
        api_keys: tuple[str, ...] = (DEFAULT_SANDBOX_KEY,),
        auth_failure_status: int | None = None,
        latency_ms: float | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
        faults: Path | None = None,
        journal: Path | None = None,
        anchor_date: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        churn: float | None = None,
        start_timeout_s: float = PROCESS_START_TIMEOUT_S,
    ) -> None:
        self.api_keys = api_keys
        self.start_timeout_s = start_timeout_s
        args = [sys.executable, "-m", "jicoo_sandbox.cli", "serve"]
        args += ["--host", host, "--port", str(port)]
        options: dict[str, object | None] = {
            "--seed": seed,
            "--bookings": bookings,
            "--auth-failure-status": auth_failure_status,
            "--latency-ms": latency_ms,
            "--rate-limit": rate_limit,
            "--burst": burst,
            "--faults": faults,
            "--journal": journal,
            "--anchor-date": anchor_date,
            "--webhook-url": webhook_url,
            "--webhook-secret": webhook_secret,
            "--churn": churn,
        }
        for flag, value in options.items():
            if value is not None:
                args += [flag, str(value)]
        for key in api_keys:
            args += ["--api-key", key]
        self.args = args
        self._process: subprocess.Popen[str] | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox process is not running")
        return self._base_url

    @property
    def api_key(self) -> str:
        return self.api_keys[0] if self.api_keys else DEFAULT_SANDBOX_KEY

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the sandbox process is not running")
        return self._process.pid

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the sandbox process is already running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed argv
            self.args, stdout=subprocess.PIPE, text=True, env=env
        )
        self._process = process
        line = self._first_line(process)
        if not line.startswith(READY_LINE_PREFIX):
            self.stop()
            raise RuntimeError(f"the sandbox process did not start: first line {line!r}")
        self._base_url = line.removeprefix(READY_LINE_PREFIX).strip()

    def _first_line(self, process: "subprocess.Popen[str]") -> str:
        if process.stdout is None:
            raise RuntimeError("the sandbox process has no stdout pipe")
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(process.stdout.readline() if process.stdout else ""),
            daemon=True,
        )
        reader.start()
        reader.join(self.start_timeout_s)
        if reader.is_alive() or not lines or not lines[0]:
            code = process.poll()
            self.stop()
            raise RuntimeError(
                f"the sandbox process did not announce itself within {self.start_timeout_s} s "
                f"(exit code {code})"
            )
        return lines[0]

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        self._base_url = None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(PROCESS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(PROCESS_STOP_TIMEOUT_S)
        if process.stdout is not None:
            with contextlib.suppress(OSError):
                process.stdout.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
