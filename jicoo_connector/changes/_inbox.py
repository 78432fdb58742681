"""The change-set inbox: which of its entries may be applied, and reading one without following
anything out of it.

Taken: regular files directly inside the inbox, named ``*.csv`` (not our own outputs, not hidden
files). Skipped, each with its reason and never blocking the others: symbolic links (dangling
or not), hard links (a second name of a file kept elsewhere), directories named ``*.csv``,
FIFOs, sockets and devices, files over the change-set size limit, and anything whose resolved
path leaves the inbox. Entries are looked at with ``lstat`` and opened relative to the inbox's
own descriptor with ``O_NOFOLLOW | O_NONBLOCK``: a FIFO is never opened, a link never followed,
and the descriptor is checked again once open (an entry swapped in between is refused).

What a run writes beside a change set (``*.rejected.csv``, ``*.plan.json``) stays in the inbox,
since the change set is read from there and never through a link.
"""

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from jicoo_connector.changes._changeset import DEFAULT_MAX_BYTES
from jicoo_connector.errors import ChangeSetError

__all__ = [
    "OUTPUT_SUFFIXES",
    "InboxFile",
    "InboxScan",
    "SkippedEntry",
    "read_inbox_file",
    "scan_inbox",
]

CHANGESET_SUFFIX: Final = ".csv"
# What a run writes next to a change set: never a new change set.
OUTPUT_SUFFIXES: Final = (".rejected.csv",)
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class InboxFile:
    """A change set the inbox holds: its path (inside the resolved inbox) and content hash."""

    path: Path
    sha256: str


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class InboxScan:
    files: tuple[InboxFile, ...]
    skipped: tuple[SkippedEntry, ...]


def _kind_problem(mode: int, links: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links are not followed out of the inbox"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if not stat.S_ISREG(mode):
        return "is a device, not a regular file"
    if links > 1:
        return f"has {links} names (a hard link to a file that may live outside the inbox)"
    return None


class _RefusedEntryError(Exception):
    """An entry that is not a change set of the inbox; its message is the reason."""


def _content(dir_fd: int, name: str, max_bytes: int) -> Iterator[bytes]:
    """An entry's bytes in chunks, read as ``_opened`` opens it, up to ``max_bytes``."""
    with _opened(dir_fd, name) as (fd, size):
        if size > max_bytes:
            raise _RefusedEntryError(f"is larger than the change-set limit of {max_bytes} bytes")
        while chunk := os.read(fd, _CHUNK):
            yield chunk


def _hash_entry(dir_fd: int, name: str, max_bytes: int) -> str:
    digest = hashlib.sha256()
    for chunk in _content(dir_fd, name, max_bytes):
        digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _opened(dir_fd: int, name: str) -> Iterator[tuple[int, int]]:
    """An entry of ``dir_fd`` opened without following a link or blocking on a FIFO, and
    checked again on the descriptor: (fd, size)."""
    before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    problem = _kind_problem(before.st_mode, before.st_nlink)
    if problem is not None:
        raise _RefusedEntryError(problem)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:  # ELOOP: it became a link since the lstat
        raise _RefusedEntryError(f"cannot be opened safely ({exc.strerror})") from None
    try:
        after = os.fstat(fd)
        problem = _kind_problem(after.st_mode, after.st_nlink)
        if problem is None and (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            problem = "was replaced while it was read"
        if problem is not None:
            raise _RefusedEntryError(problem)
        yield fd, after.st_size
    finally:
        os.close(fd)


def _is_candidate(name: str) -> bool:
    return (
        name.endswith(CHANGESET_SUFFIX)
        and not name.startswith(".")
        and not name.endswith(OUTPUT_SUFFIXES)
    )


def scan_inbox(inbox: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> InboxScan:
    """The change sets in ``inbox``, sorted by name, and every other ``*.csv`` entry with why
    it was skipped. An inbox that does not exist holds nothing."""
    root = Path(inbox).resolve()
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return InboxScan((), ())
    files: list[InboxFile] = []
    skipped: list[SkippedEntry] = []
    try:
        # By descriptor: the folder read is the one opened, whatever its path points at now.
        for name in sorted(n for n in os.listdir(dir_fd) if _is_candidate(n)):  # noqa: PTH208
            try:
                sha256 = _hash_entry(dir_fd, name, max_bytes)
            except _RefusedEntryError as refused:
                skipped.append(SkippedEntry(name, str(refused)))
                continue
            except FileNotFoundError:
                continue  # removed since the listing
            files.append(InboxFile(root / name, sha256))
    finally:
        os.close(dir_fd)
    return InboxScan(tuple(files), tuple(skipped))


def read_inbox_file(
    inbox: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The content of ``path``, which must be a change set directly inside ``inbox``, read as
    ``scan_inbox`` reads it (no link followed, no FIFO opened); ``ChangeSetError`` otherwise."""
    root = Path(inbox).resolve()
    entry = Path(path)
    if entry.parent.resolve() != root or not _is_candidate(entry.name):
        raise ChangeSetError(f"{entry.name} is not a change set directly inside {root}")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return b"".join(_content(dir_fd, entry.name, max_bytes))
    except _RefusedEntryError as refused:
        raise ChangeSetError(f"inbox entry {entry.name} {refused}") from None
    except FileNotFoundError:
        raise ChangeSetError(f"inbox entry {entry.name} is gone") from None
    finally:
        os.close(dir_fd)
