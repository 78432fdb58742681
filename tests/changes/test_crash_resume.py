"""A 1,000-row batch killed with SIGKILL, then resumed: nothing applied twice, nothing lost.

The sandbox journal is the oracle: per booking, exactly one POST that changed state. Kills
happen at the named points of the applier (intent committed / answer received / outcome
committed), while the server has applied a POST whose answer is still on the wire, and at
random moments mid-batch. Each runs on both ledger backends (SQLite file, PostgreSQL), through
the shared ``ledger_location`` fixture. Slow tier: `make test-slow` (CI runs it).
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from jicoo_connector.changes import parse_changeset
from jicoo_sandbox.server import SandboxServer
from tests.changes.apply_child import KILL_ENV
from tests.support.writeback_data import assert_server_matches, build_csv, effective_posts

CHILD = Path(__file__).with_name("apply_child.py")
BATCH_ROWS = 1000
RESCHEDULES = 10
# No client-side throttling: the test is about crashes, not the rate limit.
UNTHROTTLED = {"JICOO_RATE_LIMIT": "5000", "JICOO_BURST": "500"}
CHILD_TIMEOUT_S = 300
RANDOM_KILLS = 4
RANDOM_KILL_SEED = 20261125
# Kills come at seeded random points of the batch's progress (effective POSTs in the journal),
# plus a random fraction of a poll: wall-clock kill times miss when a whole run (~2.5 s) is
# quicker than the chosen moment, and then nothing is killed at all.
RANDOM_KILL_JITTER_S = (0.0, 0.02)
JOURNAL_POLL_S = 0.02
# A POST answer trickled this slowly is still on the wire when the applier is killed.
SLOW_ANSWER = {"kind": "trickle", "methods": ["POST"], "chunk_bytes": 8, "interval_ms": 500}


def _batch(sandbox: SandboxServer, tmp_path: Path) -> tuple[Path, list[str]]:
    """10 valid reschedules plus cancels of other live bookings, 1,000 rows in all."""
    text, uids = build_csv(sandbox, reschedules=RESCHEDULES, cancels=0)
    taken = set(uids)
    live = [
        str(b["uid"])
        for b in sandbox.store.all_bookings()
        if b["status"] != "cancel" and b["uid"] not in taken
    ]
    cancels = live[: BATCH_ROWS - len(uids)]
    assert len(uids) + len(cancels) == BATCH_ROWS, "the sandbox has too few live bookings"
    rows = [f",cancel,{uid},,,crash test" for uid in cancels]
    path = tmp_path / "batch.csv"
    path.write_text(text + "\n".join(rows) + "\n", encoding="utf-8")
    return path, uids + cancels


def _env(sandbox: SandboxServer, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        **UNTHROTTLED,
        **extra,
    }


def _child(sandbox: SandboxServer, csv_path: Path, ledger: str) -> list[str]:
    now = sandbox.config.clock().isoformat()
    return [sys.executable, str(CHILD), str(csv_path), ledger, "batch", now]


def _run(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - our own child script
        args, env=dict(env), capture_output=True, timeout=CHILD_TIMEOUT_S, check=False
    )


def _assert_exactly_once(
    sandbox: SandboxServer, csv_path: Path, ledger: str, uids: list[str]
) -> None:
    resumed = _run(_child(sandbox, csv_path, ledger), _env(sandbox))
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    assert_server_matches(sandbox, parse_changeset(csv_path, now=sandbox.config.clock()), ledger)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_named_kill_points_then_resume(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    csv_path, uids = _batch(sandbox, tmp_path)
    ledger = ledger_location
    # Successive crashes deep into the batch, each resumed by the next run.
    for point in ("after_intent:3", "after_post:150", "after_outcome:400", "after_intent:200"):
        killed = _run(_child(sandbox, csv_path, ledger), _env(sandbox, **{KILL_ENV: point}))
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr.decode()[-2000:])
    _assert_exactly_once(sandbox, csv_path, ledger, uids)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_while_an_applied_posts_answer_is_on_the_wire(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    csv_path, uids = _batch(sandbox, tmp_path)
    ledger = ledger_location
    sandbox.set_faults({"rules": [SLOW_ANSWER]})
    child = subprocess.Popen(_child(sandbox, csv_path, ledger), env=_env(sandbox))  # noqa: S603
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not effective_posts(sandbox) and time.monotonic() < deadline:
            time.sleep(JOURNAL_POLL_S)
        applied_before_kill = set(effective_posts(sandbox))
        assert applied_before_kill, "no POST reached the server"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    sandbox.clear_faults()
    _assert_exactly_once(sandbox, csv_path, ledger, uids)


def _kill_once_past(
    sandbox: SandboxServer, child: "subprocess.Popen[bytes]", applied: int, jitter_s: float
) -> None:
    """SIGKILL ``child`` once the journal shows ``applied`` effective POSTs, ``jitter_s`` later;
    fails if the child finished the batch first (no kill would have happened)."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while len(effective_posts(sandbox)) < applied:
            assert child.poll() is None, f"the run ended before {applied} POSTs applied"
            assert time.monotonic() < deadline, f"{applied} POSTs not applied in time"
            time.sleep(JOURNAL_POLL_S)
        time.sleep(jitter_s)
        assert child.poll() is None, f"the run ended before the kill after {applied} POSTs"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_kills_then_resume(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    csv_path, uids = _batch(sandbox, tmp_path)
    ledger = ledger_location
    rng = random.Random(RANDOM_KILL_SEED)
    # Each run is killed past a later point than the one before (whatever the machine's speed).
    for applied in sorted(rng.sample(range(1, BATCH_ROWS - 100), RANDOM_KILLS)):
        child = subprocess.Popen(  # noqa: S603
            _child(sandbox, csv_path, ledger), env=_env(sandbox), stdout=subprocess.DEVNULL
        )
        _kill_once_past(sandbox, child, applied, rng.uniform(*RANDOM_KILL_JITTER_S))
    assert len(effective_posts(sandbox)) < BATCH_ROWS, "the last kill came after the batch ended"
    _assert_exactly_once(sandbox, csv_path, ledger, uids)
