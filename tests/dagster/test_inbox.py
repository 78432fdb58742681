"""The change-set inbox through Dagster: only regular files directly in the inbox start a run.

Each hostile entry sits beside a good change set in a real instance's sensor tick: it is skipped
with one warning naming it, the good file still gets its run, and a tick never hangs. A file
swapped for a link after the tick is refused by the run itself, before anything is read or sent.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import NAMES, definitions
from tests.support.writeback_data import HEADER, future_open_bookings

APPLY_LOG_OP = NAMES.op("apply_log")
APPLY_JOB = NAMES.job("apply_changeset")
INBOX_SENSOR = NAMES.sensor("changeset_inbox")
TICK_TIMEOUT_S = 30.0
# A change set a user keeps outside the inbox, readable by the Dagster daemon's account only.
PRIVATE_MODE = 0o600


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as temporary:
        yield temporary


def _private_change_set(folder: Path, uid: str = "private-uid-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "private.csv"
    target.write_text(f"{HEADER}\ncancel,{uid},,,private reason\n", encoding="utf-8")
    target.chmod(PRIVATE_MODE)
    return target


def _symlink(inbox: Path, outside: Path) -> str:
    (inbox / "link.csv").symlink_to(_private_change_set(outside))
    return "link.csv"


def _dangling(inbox: Path, outside: Path) -> str:
    (inbox / "dangling.csv").symlink_to(outside / "nothing-here.csv")
    return "dangling.csv"


def _relative_link(inbox: Path, outside: Path) -> str:
    _private_change_set(outside)
    (inbox / "relative.csv").symlink_to(os.path.relpath(outside / "private.csv", inbox))
    return "relative.csv"


def _hard_link(inbox: Path, outside: Path) -> str:
    (inbox / "hard.csv").hardlink_to(_private_change_set(outside))
    return "hard.csv"


def _directory(inbox: Path, outside: Path) -> str:
    (inbox / "folder.csv").mkdir()
    return "folder.csv"


def _fifo(inbox: Path, outside: Path) -> str:
    os.mkfifo(inbox / "pipe.csv")
    return "pipe.csv"


def _forged_log_line(inbox: Path, outside: Path) -> str:
    # A dangling link whose name, printed as is, would add a second, made-up line to the log.
    name = "x.csv\nchange-set inbox: applied every row of payroll.csv"
    (inbox / name).symlink_to(outside / "nothing-here.csv")
    return name


def _socket(inbox: Path, outside: Path) -> Iterator[str]:
    # A short path: a socket's path is limited to about 100 bytes.
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(inbox / "s.csv"))
        yield "s.csv"


HOSTILE: dict[str, Callable[[Path, Path], object]] = {
    "symbolic link to a private file": _symlink,
    "relative symbolic link out of the inbox": _relative_link,
    "dangling symbolic link": _dangling,
    "hard link to a private file": _hard_link,
    "directory named *.csv": _directory,
    "FIFO": _fifo,
    "name with a line break that forges a log line": _forged_log_line,
}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)


def _defs(sandbox: SandboxServer, inbox: Path) -> dg.Definitions:
    """The test organization with its change-set inbox at ``inbox``, its other files (ledger,
    apply log) in ``state`` beside it."""
    return definitions(sandbox, inbox.parent / "state", changeset_inbox=str(inbox))


def _tick(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> tuple[list[dg.RunRequest], list[str]]:
    """One tick in a thread: a tick that blocks fails the test instead of hanging it."""
    outcome: list[list[dg.RunRequest] | Exception] = []
    records = _Records()

    def evaluate() -> None:
        try:
            with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
                # The tick's own logger (what the UI shows for the tick), not a global one.
                context.log.addHandler(records)
                tick = defs.resolve_sensor_def(INBOX_SENSOR).evaluate_tick(context)
            outcome.append(list(tick.run_requests or []))
        except Exception as exc:  # noqa: BLE001 - reported below as the test's failure
            outcome.append(exc)

    worker = threading.Thread(target=evaluate, daemon=True)
    worker.start()
    worker.join(TICK_TIMEOUT_S)
    assert outcome, f"the tick did not finish within {TICK_TIMEOUT_S} s"
    (result,) = outcome
    if isinstance(result, Exception):
        raise AssertionError(f"the tick failed: {result!r}") from result
    return result, [r.getMessage() for r in records.seen if r.levelno == logging.WARNING]


def _names(requests: list[dg.RunRequest]) -> list[str]:
    return [Path(r.run_config["ops"][APPLY_LOG_OP]["config"]["path"]).name for r in requests]


def _good(inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "good.csv").write_text(f"{HEADER}\ncancel,some-uid,,,reason\n", encoding="utf-8")


def _run(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """The run the sensor asked for, its ledger and apply log in the organization's state."""
    return defs.resolve_job_def(APPLY_JOB).execute_in_process(
        run_config=request.run_config, instance=instance, raise_on_error=False
    )


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_entry_is_skipped_with_one_warning_and_blocks_nothing(
    case: str, sandbox: SandboxServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "elsewhere"
    _good(inbox)
    name = HOSTILE[case](inbox, outside)
    defs = _defs(sandbox, inbox)
    requests, warnings = _tick(instance, defs)
    assert _names(requests) == ["good.csv"]
    # The name is quoted as Python writes it: control characters escaped, one line each.
    assert [w for w in warnings if repr(name) in w] == [w for w in warnings if "inbox" in w]
    (warning,) = [w for w in warnings if repr(name) in w]
    assert warning.startswith(f"change-set inbox: skipped {name!r}: it ")
    assert "\n" not in warning
    # What the tick's runs write stays in the inbox: a run of a link once wrote the target's
    # rejected rows beside the target (private.rejected.csv, outside).
    for request in requests:
        assert _run(defs, instance, request).success
    written_outside = sorted(p.name for p in outside.iterdir()) if outside.exists() else []
    assert written_outside in ([], ["private.csv"])
    assert "good.rejected.csv" in {p.name for p in inbox.iterdir()}


def test_a_socket_is_skipped_too(
    sandbox: SandboxServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    inbox = tmp_path / "i"
    _good(inbox)
    for name in _socket(inbox, tmp_path):
        requests, warnings = _tick(instance, _defs(sandbox, inbox))
        assert _names(requests) == ["good.csv"]
        assert warnings == [f"change-set inbox: skipped {name!r}: it is a socket"]


def test_every_hostile_entry_at_once_still_lets_the_good_file_through(
    sandbox: SandboxServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "elsewhere"
    _good(inbox)
    names = [make(inbox, outside / str(n)) for n, make in enumerate(HOSTILE.values())]
    requests, warnings = _tick(instance, _defs(sandbox, inbox))
    assert _names(requests) == ["good.csv"]
    assert len(warnings) == len(names)
    for name in names:
        assert [w for w in warnings if w.startswith(f"change-set inbox: skipped {name!r}: it ")]


def test_a_file_swapped_for_a_link_after_the_tick_is_refused_by_the_run(
    sandbox: SandboxServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "elsewhere"
    _good(inbox)
    defs = _defs(sandbox, inbox)
    (request,) = _tick(instance, defs)[0]
    # The private file names a real booking: applied, it would be cancelled.
    uid = str(future_open_bookings(sandbox)[0]["uid"])
    private = _private_change_set(outside, uid)
    (inbox / "good.csv").unlink()
    (inbox / "good.csv").symlink_to(private)
    result = _run(defs, instance, request)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "good.csv is a symbolic link" in str(failure.event_specific_data)
    assert [e for e in sandbox.store.journal() if e["booking_uid"] == uid] == []
    assert sorted(p.name for p in outside.iterdir()) == ["private.csv"]
    assert sorted(p.name for p in inbox.iterdir()) == ["good.csv"]


def test_what_a_run_writes_stays_in_the_inbox(
    sandbox: SandboxServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    _good(inbox)  # its booking does not exist: the row comes back rejected
    defs = _defs(sandbox, inbox)
    (request,) = _tick(instance, defs)[0]
    assert _run(defs, instance, request).success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "state"]
    assert sorted(p.name for p in inbox.iterdir()) == ["good.csv", "good.rejected.csv"]
