"""`jicoo apply` when the ledger, the disk or the apply log fails mid-batch, run as a user runs it
(the CLI in its own process against the sandbox): exit 1, one message with this run's counts
(applied, recorded, not attempted) that says a re-run is safe, and the re-run finishes the batch
with every booking changed exactly once. The sandbox journal is the oracle of what was applied.

Each failure runs on both ledger backends where it can happen on both:
- the ledger's server stops (PostgreSQL: its own throwaway server, stopped with ``-m fast``);
- the disk fills (a file-size limit, ``RLIMIT_FSIZE``, in the child: SQLite's write-ahead log
  hits it mid-batch; with the ledger on PostgreSQL it is the apply log that hits it);
- the apply-log folder cannot be written (a file stands where the folder should be).
"""

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from jicoo_connector.changes import DONE_STATES, IN_FLIGHT_STATES, Ledger, State
from jicoo_connector.cli import EXIT_OK, EXIT_SOME_FAILED
from jicoo_sandbox.server import SandboxServer
from tests.support.postgres_server import PostgresServer, postgres_server
from tests.support.writeback_data import HEADER, effective_posts

# Enough changes for a failure to land mid-batch; a failure after the batch needs few.
ROWS = 120
FEW = 8
CHILD_TIMEOUT_S = 180
POLL_S = 0.01
# Each request waits this long in the sandbox: the batch lasts long enough to be stopped.
LATENCY = {"latency_ms": 25}
# Below what the batch's write-ahead log grows to, above what opening the batch needs.
FILE_SIZE_LIMIT = 256 * 1024
# Smaller than any apply log (a Parquet file of 16 columns).
NO_ROOM = 1024
COUNTS = re.compile(
    r"(?P<applied>\d+) of (?P<changes>\d+) changes applied, (?P<recorded>\d+) recorded in the "
    r"ledger, (?P<unrecorded>\d+) sent but not recorded \(in doubt\), (?P<not_attempted>\d+) "
    r"not attempted; (?P<posts>\d+) POSTs sent"
)
# Runs the CLI under a file-size limit; SIGXFSZ ignored, so a write past it fails (EFBIG)
# instead of killing the process.
LIMITED = (
    "import resource, runpy, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "sys.argv[0] = 'jicoo'\n"
    "runpy.run_module('jicoo_connector.cli', run_name='__main__')\n"
)


def _cancels(sandbox: SandboxServer, tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """A change set that cancels ``count`` live bookings."""
    uids = [str(b["uid"]) for b in sandbox.store.all_bookings() if b["status"] != "cancel"]
    assert len(uids) >= count, "the sandbox has too few live bookings"
    path = tmp_path / "batch.csv"
    rows = "".join(f",cancel,{uid},,,maintenance\n" for uid in uids[:count])
    path.write_text(f"{HEADER}\n{rows}", encoding="utf-8")
    return path, uids[:count]


def _command(csv_path: Path, ledger: str, apply_log: Path, limit: int | None) -> list[str]:
    args = ["apply", str(csv_path), "--ledger", ledger, "--apply-log", str(apply_log)]
    if limit is None:
        return [sys.executable, "-m", "jicoo_connector.cli", *args]
    return [sys.executable, "-c", LIMITED, str(limit), *args]


def _env(sandbox: SandboxServer) -> dict[str, str]:
    return {
        **os.environ,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_RATE_LIMIT": "2000",
        "JICOO_BURST": "200",
    }


def _apply(
    sandbox: SandboxServer, csv_path: Path, ledger: str, apply_log: Path, limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        _command(csv_path, ledger, apply_log, limit),
        env=_env(sandbox),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def _counts(stderr: str) -> dict[str, int]:
    found = COUNTS.search(stderr)
    assert found, stderr[-3000:]
    return {name: int(value) for name, value in found.groupdict().items()}


def _ledger_counts(ledger: str) -> Counter[State]:
    with Ledger(ledger, read_only=True) as led:
        return Counter({State(state): n for state, n in led.counts("batch").items()})


def _assert_told_and_true(
    returncode: int, stderr: str, sandbox: SandboxServer, ledger: str
) -> dict[str, int]:
    """Exit 1 with one message whose counts are what the journal and the ledger show."""
    assert returncode == EXIT_SOME_FAILED, stderr[-3000:]
    assert "re-running the same command is safe" in stderr.lower()
    assert "Traceback" not in stderr
    counts = _counts(stderr)
    # Cancels have no in-doubt answers here: what this run applied is what the server shows.
    assert counts["applied"] == len(effective_posts(sandbox)) > 0
    states = _ledger_counts(ledger)
    assert sum(states[s] for s in DONE_STATES) == counts["recorded"]
    assert sum(states[s] for s in IN_FLIGHT_STATES) == counts["unrecorded"]
    assert states[State.PENDING] == counts["not_attempted"]
    return counts


def _assert_all_recorded_but(
    unwritten: str, done: subprocess.CompletedProcess[str], sandbox: SandboxServer, ledger: str
) -> None:
    """Every change went through the ledger; the message names the file that was not written."""
    assert f"the changes went through the ledger, but {unwritten}" in done.stderr
    counts = _assert_told_and_true(done.returncode, done.stderr, sandbox, ledger)
    assert (counts["applied"], counts["recorded"], counts["not_attempted"]) == (FEW, FEW, 0)


def _assert_rerun_finishes(
    sandbox: SandboxServer, csv_path: Path, ledger: str, apply_log: Path, uids: list[str]
) -> None:
    again = _apply(sandbox, csv_path, ledger, apply_log)
    assert again.returncode == EXIT_OK, again.stderr[-3000:]
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    assert _ledger_counts(ledger) == Counter({State.APPLIED: len(uids)})
    assert list(apply_log.rglob("*.parquet"))


def _stop_once_applied(
    sandbox: SandboxServer, child: "subprocess.Popen[str]", server: PostgresServer
) -> None:
    """Stop the ledger's server once the sandbox has applied a tenth of the batch."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while len(effective_posts(sandbox)) < ROWS // 10:
        assert child.poll() is None, "the apply ended before the ledger was stopped"
        assert time.monotonic() < deadline, "the apply made no progress"
        time.sleep(POLL_S)
    server.halt()


@pytest.mark.timeout(300)
def test_the_postgres_ledger_stopping_mid_batch_exits_1_with_the_counts(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    csv_path, uids = _cancels(sandbox, tmp_path, ROWS)
    apply_log = tmp_path / "apply_log"
    sandbox.set_faults(LATENCY)
    # Its own server: the session's serves the other tests.
    with postgres_server() as server:
        ledger = server.create_database()
        child = subprocess.Popen(  # noqa: S603 - our own command
            _command(csv_path, ledger, apply_log, None),
            env=_env(sandbox),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _stop_once_applied(sandbox, child, server)
            _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
        finally:
            child.kill()
        assert "the apply stopped mid-batch (LedgerError" in stderr
        server.resume()
        counts = _assert_told_and_true(child.returncode, stderr, sandbox, ledger)
        assert counts["not_attempted"] > 0
        sandbox.clear_faults()
        _assert_rerun_finishes(sandbox, csv_path, ledger, apply_log, uids)


@pytest.mark.timeout(300)
def test_a_full_disk_under_the_sqlite_ledger_mid_batch_exits_1_with_the_counts(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    csv_path, uids = _cancels(sandbox, tmp_path, ROWS)
    ledger, apply_log = str(tmp_path / "ledger.sqlite"), tmp_path / "apply_log"
    done = _apply(sandbox, csv_path, ledger, apply_log, limit=FILE_SIZE_LIMIT)
    assert "the apply stopped mid-batch (LedgerError" in done.stderr
    counts = _assert_told_and_true(done.returncode, done.stderr, sandbox, ledger)
    assert counts["not_attempted"] > 0
    assert not apply_log.exists()
    _assert_rerun_finishes(sandbox, csv_path, ledger, apply_log, uids)


@pytest.mark.timeout(300)
def test_a_full_disk_under_the_apply_log_of_a_postgres_ledger_exits_1_with_the_counts(
    sandbox: SandboxServer, tmp_path: Path, postgres_url: str
) -> None:
    csv_path, uids = _cancels(sandbox, tmp_path, FEW)
    apply_log = tmp_path / "apply_log"
    # The ledger writes no local file: the first file past the limit is the apply log.
    done = _apply(sandbox, csv_path, postgres_url, apply_log, limit=NO_ROOM)
    _assert_all_recorded_but(f"{apply_log}/batch=batch/run-", done, sandbox, postgres_url)
    assert not list(apply_log.rglob("*.parquet"))
    _assert_rerun_finishes(sandbox, csv_path, postgres_url, apply_log, uids)


@pytest.mark.timeout(300)
def test_an_apply_log_folder_that_cannot_be_written_exits_1_with_the_counts(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    csv_path, uids = _cancels(sandbox, tmp_path, FEW)
    blocked = tmp_path / "apply_log"
    blocked.write_text("a file where the apply-log folder should be", encoding="utf-8")
    done = _apply(sandbox, csv_path, ledger_location, blocked)
    _assert_all_recorded_but(f"{blocked}/batch=batch/run-", done, sandbox, ledger_location)
    blocked.unlink()
    _assert_rerun_finishes(sandbox, csv_path, ledger_location, blocked, uids)
