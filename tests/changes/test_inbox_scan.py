"""scan_inbox and read_inbox_file on real files: what the inbox takes, what it skips and why.

The Dagster sensor's view of the same cases is tests/dagster/test_inbox.py; here the library
alone, with entries a hostile or careless user can leave in the folder.
"""

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jicoo_connector.changes import InboxScan, read_inbox_file, scan_inbox
from jicoo_connector.errors import ChangeSetError

CHANGESET = b"action,booking_uid\ncancel,abc\n"
# Names a shell or a log line would misread; to the file system they are plain names.
CONTROL_NAMES = ("line\nbreak.csv", "tab\there.csv", "\x1b[31mred.csv", "bell\x07.csv")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    target = folder / "private.csv"
    target.write_bytes(CHANGESET)
    target.chmod(0o600)
    return target


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _taken(scan: InboxScan) -> list[str]:
    return [f.path.name for f in scan.files]


def _skipped(scan: InboxScan) -> dict[str, str]:
    return {entry.name: entry.reason for entry in scan.skipped}


def test_a_regular_file_is_taken_with_its_path_inside_the_inbox_and_its_hash(
    inbox: Path,
) -> None:
    (inbox / "moves.csv").write_bytes(CHANGESET)
    scan = scan_inbox(inbox)
    (taken,) = scan.files
    assert taken.path == inbox.resolve() / "moves.csv"
    assert taken.sha256 == _sha(CHANGESET)
    assert scan.skipped == ()
    assert read_inbox_file(inbox, taken.path) == CHANGESET


def test_what_is_not_a_change_set_is_neither_taken_nor_reported(inbox: Path) -> None:
    for name in (".hidden.csv", "moves.rejected.csv", "notes.txt", "moves.csv.part", "CSV"):
        (inbox / name).write_bytes(CHANGESET)
    assert scan_inbox(inbox) == InboxScan((), ())


def test_an_inbox_that_does_not_exist_or_is_a_file_holds_nothing(tmp_path: Path) -> None:
    assert scan_inbox(tmp_path / "missing") == InboxScan((), ())
    (tmp_path / "file").write_bytes(CHANGESET)
    assert scan_inbox(tmp_path / "file") == InboxScan((), ())


@pytest.fixture
def hostile(inbox: Path, outside: Path) -> Iterator[dict[str, str]]:
    """Every kind of entry the inbox skips, beside one good file: name -> start of the reason."""
    (inbox / "good.csv").write_bytes(CHANGESET)
    (inbox / "link.csv").symlink_to(outside)
    (inbox / "relative.csv").symlink_to(os.path.relpath(outside, inbox))
    (inbox / "dangling.csv").symlink_to(inbox.parent / "nothing-here.csv")
    (inbox / "loop.csv").symlink_to(inbox / "loop.csv")
    (inbox / "hard.csv").hardlink_to(outside)
    (inbox / "folder.csv").mkdir()
    os.mkfifo(inbox / "pipe.csv")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(inbox / "s.csv"))
        yield {
            "link.csv": "is a symbolic link",
            "relative.csv": "is a symbolic link",
            "dangling.csv": "is a symbolic link",
            "loop.csv": "is a symbolic link",
            "hard.csv": "has 2 names",
            "folder.csv": "is a directory",
            "pipe.csv": "is a FIFO",
            "s.csv": "is a socket",
        }


def test_links_directories_fifos_and_sockets_are_skipped_each_with_its_reason(
    inbox: Path, hostile: dict[str, str]
) -> None:
    # A FIFO opened for reading would block until a writer came: the scan returning at all
    # shows it was never opened.
    scan = scan_inbox(inbox)
    assert _taken(scan) == ["good.csv"]
    skipped = _skipped(scan)
    assert sorted(skipped) == sorted(hostile)
    for name, reason in hostile.items():
        assert skipped[name].startswith(reason), (name, skipped[name])


def test_a_hostile_entry_cannot_be_read_by_name_either(
    inbox: Path, hostile: dict[str, str]
) -> None:
    for name, reason in hostile.items():
        with pytest.raises(ChangeSetError, match=re.escape(f"inbox entry {name} {reason}")):
            read_inbox_file(inbox, inbox / name)


def test_a_path_outside_the_inbox_or_an_output_is_refused(inbox: Path, outside: Path) -> None:
    (inbox / "moves.rejected.csv").write_bytes(CHANGESET)
    (inbox / "sub").mkdir()
    (inbox / "sub" / "nested.csv").write_bytes(CHANGESET)
    for path in (outside, inbox / "moves.rejected.csv", inbox / "sub" / "nested.csv",
                 inbox / ".." / "elsewhere" / "private.csv"):  # fmt: skip
        with pytest.raises(ChangeSetError, match="is not a change set directly inside"):
            read_inbox_file(inbox, path)
    with pytest.raises(ChangeSetError, match=re.escape("inbox entry gone.csv is gone")):
        read_inbox_file(inbox, inbox / "gone.csv")


def test_a_file_over_the_size_limit_is_skipped_without_being_read(inbox: Path) -> None:
    (inbox / "small.csv").write_bytes(CHANGESET)
    # Sparse: 64 GiB to the scan, a few blocks on the disk. Read whole, it would take minutes.
    with (inbox / "huge.csv").open("wb") as huge:
        huge.truncate(64 << 30)
    scan = scan_inbox(inbox)
    assert _taken(scan) == ["small.csv"]
    assert _skipped(scan)["huge.csv"].startswith("is larger than the change-set limit")
    limited = scan_inbox(inbox, max_bytes=len(CHANGESET) - 1)
    assert _taken(limited) == []
    assert sorted(_skipped(limited)) == ["huge.csv", "small.csv"]
    with pytest.raises(ChangeSetError, match="is larger than the change-set limit"):
        read_inbox_file(inbox, inbox / "huge.csv")


def test_names_with_control_characters_are_plain_regular_files(inbox: Path) -> None:
    """Taken as they are spelled: the name is data, never split or interpreted."""
    for name in CONTROL_NAMES:
        (inbox / name).write_bytes(CHANGESET + name.encode())
    scan = scan_inbox(inbox)
    assert _taken(scan) == sorted(CONTROL_NAMES)
    for taken in scan.files:
        assert taken.sha256 == _sha(CHANGESET + taken.path.name.encode())
        assert read_inbox_file(inbox, taken.path) == CHANGESET + taken.path.name.encode()


def test_a_file_still_being_written_is_taken_as_it_is_and_seen_again_once_it_changes(
    inbox: Path,
) -> None:
    """The scan cannot know a writer is not done: it hashes the bytes present. The hash is what
    the sensor keys a run on, so the finished file is a new change set, not the same one."""
    path = inbox / "growing.csv"
    with path.open("wb") as writer:
        writer.write(CHANGESET[:10])
        writer.flush()
        (partial,) = scan_inbox(inbox).files
        writer.write(CHANGESET[10:])
    (finished,) = scan_inbox(inbox).files
    assert partial.sha256 == _sha(CHANGESET[:10])
    assert finished.sha256 == _sha(CHANGESET)
    assert partial.path == finished.path


def test_an_inbox_reached_through_a_link_is_scanned_at_its_real_place(
    inbox: Path, tmp_path: Path
) -> None:
    """The inbox's own path may be a link (a mounted share): what it holds is still judged
    entry by entry, and paths name the real folder."""
    (inbox / "moves.csv").write_bytes(CHANGESET)
    alias = tmp_path / "alias"
    alias.symlink_to(inbox)
    (taken,) = scan_inbox(alias).files
    assert taken.path == inbox.resolve() / "moves.csv"
    assert read_inbox_file(alias, alias / "moves.csv") == CHANGESET
