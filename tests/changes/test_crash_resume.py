"""A 1,000-row batch killed with SIGKILL, then resumed: nothing applied twice, nothing lost.

The sandbox journal is the oracle: per booking, exactly one POST that changed state. Kills
happen at the named points of the applier (intent committed / answer received / outcome
committed), while the server has applied a POST whose answer is still on the wire, and at
random moments. Slow tier: `make test-slow` (CI runs it).
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

from jicoo_connector.changes.changeset import parse_changeset
from jicoo_sandbox.server import SandboxServer
from tests.changes.apply_child import KILL_ENV
from tests.writeback_data import assert_server_matches, build_csv, effective_posts

CHILD = Path(__file__).with_name("apply_child.py")
BATCH_ROWS = 1000
RESCHEDULES = 10
# No client-side throttling: the test is about crashes, not the rate limit.
UNTHROTTLED = {"JICOO_RATE_LIMIT": "5000", "JICOO_BURST": "500"}
CHILD_TIMEOUT_S = 300
RANDOM_KILLS = 4
RANDOM_KILL_WINDOW_S = (0.8, 3.0)
JOURNAL_POLL_S = 0.02
# A POST answer trickled this slowly is still on the wire when the applier is killed.
SLOW_ANSWER = {"kind": "trickle", "methods": ["POST"], "chunk_bytes": 8, "interval_ms": 500}


@pytest.fixture
def ledger_location(tmp_path: Path) -> str:
    """These 1,000-row runs use the SQLite ledger only: on PostgreSQL they pass too (about 98 s
    more, measured), beyond the slow tier's budget. PostgreSQL's crash-and-resume is covered by
    test_apply's named kill points and by the two-worker test's kills; to run these on both
    backends, delete this fixture (the shared one in tests/conftest.py takes over)."""
    return str(tmp_path / "ledger.sqlite")


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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_kills_then_resume(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    csv_path, uids = _batch(sandbox, tmp_path)
    ledger = ledger_location
    rng = random.Random(20261125)
    finished = False
    for _ in range(RANDOM_KILLS):
        child = subprocess.Popen(  # noqa: S603
            _child(sandbox, csv_path, ledger), env=_env(sandbox), stdout=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(*RANDOM_KILL_WINDOW_S))
        if child.poll() is not None:
            finished = True
            break
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert finished or len(effective_posts(sandbox)) < BATCH_ROWS, "kills happened mid-batch"
    _assert_exactly_once(sandbox, csv_path, ledger, uids)
