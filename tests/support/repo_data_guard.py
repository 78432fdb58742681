"""Tests never read or write the checkout's ``data/``: a user's ledger, warehouse and webhook
events may sit there.

Two layers. Every setting whose default lies under ``data/`` is pointed at a folder of the test
session through its ``JICOO_*`` variable (``ConnectorConfig.from_env`` reads it, and child
processes inherit it), so no code of ours, in the test process or a child, resolves a default
there. And an audit hook records every path under ``data/`` that the test process opens
(``open``, ``sqlite3.connect``), lists or changes; the session fails if there is one.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jicoo_connector.config import ConnectorConfig

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
DEFAULTS_FOLDER = "data/"
# Audit events whose arguments name a path (https://docs.python.org/3/library/audit_events.html),
# with the index of their ``dir_fd`` argument: a relative path with a dir_fd (shutil.rmtree
# walks that way) is relative to that folder, not to the working directory.
PATH_EVENTS: dict[str, int | None] = {
    "open": None,
    "sqlite3.connect": None,
    "os.listdir": None,
    "os.scandir": None,
    "os.truncate": None,
    "shutil.rmtree": None,
    "shutil.copyfile": None,
    "os.mkdir": 2,
    "os.remove": 1,
    "os.rmdir": 1,
    "os.rename": 2,
    "os.utime": 3,
    "os.chmod": 2,
}


def data_defaults() -> dict[str, str]:
    """``JICOO_*`` variable -> its default, for every setting whose default is under data/."""
    defaults = ConnectorConfig()
    return {
        spec.env: value
        for name, spec in ConnectorConfig.specs().items()
        if isinstance(value := getattr(defaults, name), str) and value.startswith(DEFAULTS_FOLDER)
    }


def session_paths(folder: Path) -> dict[str, str]:
    """The same layout under ``folder``: the value each of those variables gets in a session."""
    return {
        env: str(folder / default.removeprefix(DEFAULTS_FOLDER))
        for env, default in data_defaults().items()
    }


class OpenGuard:
    """Records, while armed, the paths under ``root`` named by audit events of this process.

    Audit hooks cannot be removed: install one guard per process and arm it per session.
    The hook never raises (an exception there would fail the caller's ``open``)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())
        self.armed = False
        self.touched: list[tuple[str, str]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        if not self.armed or event not in PATH_EVENTS:
            return
        try:
            for path in self._paths(event, args):
                if path == self.root or path.startswith(self.root + os.sep):
                    self.touched.append((event, path))
        except Exception:  # noqa: BLE001, S110 - never fail the audited call; unreadable args are no path
            pass

    @staticmethod
    def _paths(event: str, args: tuple[object, ...]) -> list[str]:
        """The absolute paths an event names (abspath, not resolve(): no file system calls
        inside the hook). A relative one whose folder is unknown is left out: the dir_fd of
        ``os.open`` (an "open" event whose mode is None) is not in its event."""
        fd_at = PATH_EVENTS[event]
        dir_fd = args[fd_at] if fd_at is not None and len(args) > fd_at else None
        relative_to_fd = (isinstance(dir_fd, int) and dir_fd >= 0) or (  # -1: none given
            event == "open" and len(args) > 1 and args[1] is None
        )
        names = [os.fsdecode(a) for a in args if isinstance(a, str | bytes | os.PathLike)]
        if event == "open":
            names = names[:1]  # the mode is text too
        return [
            os.path.abspath(name)  # noqa: PTH100
            for name in names
            if Path(name).is_absolute() or not relative_to_fd
        ]

    @contextmanager
    def watching(self) -> Iterator[list[tuple[str, str]]]:
        """Arm the guard; yields the (event, path) list it fills."""
        self.touched = []
        self.armed = True
        try:
            yield self.touched
        finally:
            self.armed = False
