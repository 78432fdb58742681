"""Atomic local file writes: a reader sees the old file or the new one, never half of one.

The one way the library writes a local file it hands to users or readers (Parquet partitions,
apply logs, plans, rejected rows, undo files). Object stores need none of this: one upload
replaces a key atomically (see ``storage``).
"""

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TEMP_MARKER", "atomic_path", "temp_glob", "write_text_atomic"]

# Temp files are hidden (readers such as pyarrow datasets skip dot files) and unique per
# writer (two concurrent writers never share one).
TEMP_MARKER = ".tmp-"


def temp_glob(name: str) -> str:
    """A glob for the temp files of writers of ``name`` (to clear those a crash left)."""
    return f".{name}{TEMP_MARKER}*"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``target`` to write to; on a clean exit make it ``target``.

    The temp file lives in the target's folder, so the rename is a same-filesystem rename,
    which POSIX makes atomic. It is fsync'd before the rename (the data is on disk before it
    becomes visible) and the folder after it (the rename itself survives power loss). On an
    exception the temp file is removed and ``target`` is left as it was.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.name}{TEMP_MARKER}{uuid.uuid4().hex}")
    try:
        yield temp
        _fsync(temp)
        temp.replace(final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync(final.parent)


def write_text_atomic(target: str | os.PathLike[str], text: str, *, encoding: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns the target's path."""
    with atomic_path(target) as temp:
        temp.write_text(text, encoding=encoding)
    return Path(target)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
