"""Two workers, one batch: appliers in separate processes that share only PostgreSQL (the
ledger) and the API, started on the same batch 20 times, some killed with SIGKILL mid-batch.

Each worker is its own process with its own scratch directory (its copy of the change set, its
result file) and its own database session and HTTP client. Both start applying at the same
instant. In every wave of every round:

- at most one worker sends POSTs: the other is refused at once (``LedgerBusyError``), or, had it
  come after the first one finished, finds every change final and sends nothing;
- in a wave nobody was killed in, exactly one worker's run finishes the batch (every change
  final) and its POSTs are all the POSTs the sandbox saw in that wave.

A round whose holder was killed (at a seeded random moment after it took the batch) runs a second
wave of both workers, which must finish it. After each round the sandbox journal is the oracle:
one POST per booking, that POST effective (0 duplicates), every change final and visible on the
server (0 lost). Slow tier.
"""

import json
import multiprocessing
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from jicoo_connector.changes import FINAL_STATES, Ledger, parse_changeset
from jicoo_sandbox.server import SandboxServer
from tests.changes.apply_child import RESULT_FILE, worker
from tests.support.writeback_data import assert_server_matches, build_csv

ROUNDS = 20
SEED = 20261201
KILL_SHARE = 0.5
# The holder takes ~0.3 s or more (5 changes, GET + POST each, 3 at a time, 60 ms apiece):
# a kill 0-0.25 s after it took the batch lands mid-batch, before, between or after POSTs.
KILL_AFTER_S = (0.0, 0.25)
# Fixed latency, no jitter: a POST a killed worker left is applied before any read-back that
# a later applier sends, as on a real server whose requests are handled in arrival order.
LATENCY = {"latency_ms": 60}
START_DELAY_S = 0.2
WAVE_TIMEOUT_S = 60
POLL_S = 0.005
HOLDER_PID = re.compile(r"pid (\d+)$")


@dataclass(frozen=True)
class Outcome:
    """What one worker of a wave did, read from its exit code and its result file."""

    killed: bool
    busy: bool
    posts: int
    finished: bool


def _outcome(process: "multiprocessing.process.BaseProcess", scratch: Path) -> Outcome:
    if process.exitcode == -signal.SIGKILL:
        return Outcome(killed=True, busy=False, posts=0, finished=False)
    assert process.exitcode == 0, f"worker in {scratch} exited {process.exitcode}"
    result = json.loads((scratch / RESULT_FILE).read_text(encoding="utf-8"))
    if "busy" in result:
        assert "is being applied by another process" in result["busy"]
        return Outcome(killed=False, busy=True, posts=0, finished=False)
    final = {state.value for state in FINAL_STATES}
    return Outcome(
        killed=False,
        busy=False,
        posts=int(result["posts"]),
        finished=set(result["counts"]) <= final,
    )


def _holder_pid(ledger: Ledger, batch_id: str, after_epoch: int, deadline: float) -> int:
    """The pid of the worker that takes the batch next (the ledger records host and pid)."""
    while time.monotonic() < deadline:
        found = ledger.batch_holder(batch_id)
        if found is not None and found[0] > after_epoch and found[1]:
            match = HOLDER_PID.search(found[1])
            assert match, found
            return int(match.group(1))
        time.sleep(POLL_S)
    raise AssertionError(f"no worker took batch {batch_id} in time")


def _wave(
    ctx: multiprocessing.context.BaseContext,
    sandbox: SandboxServer,
    ledger: Ledger,
    url: str,
    csv_text: str,
    where: Path,
    batch_id: str,
    kill_after: float | None,
) -> list[Outcome]:
    found = ledger.batch_holder(batch_id)
    epoch = found[0] if found else 0
    posts_before = len(sandbox.store.journal())
    start_at = time.time() + START_DELAY_S
    workers = []
    for name in ("a", "b"):
        scratch = where / f"worker-{name}"
        scratch.mkdir(parents=True)
        (scratch / "batch.csv").write_text(csv_text, encoding="utf-8")
        api = (sandbox.api_key, sandbox.base_url)
        now = sandbox.config.clock().isoformat()
        process = ctx.Process(target=worker, args=(str(scratch), url, batch_id, api, now, start_at))
        process.start()
        workers.append((process, scratch))
    if kill_after is not None:
        deadline = time.monotonic() + WAVE_TIMEOUT_S
        pid = _holder_pid(ledger, batch_id, epoch, deadline)
        assert pid in {process.pid for process, _ in workers}
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    for process, _ in workers:
        process.join(WAVE_TIMEOUT_S)
        assert process.exitcode is not None, "a worker hung"
    outcomes = [_outcome(process, scratch) for process, scratch in workers]
    wave_posts = sum(1 for e in sandbox.store.journal(posts_before) if e["method"] == "POST")
    senders = [o for o in outcomes if o.posts > 0]
    assert len(senders) <= 1, outcomes
    if kill_after is not None:
        assert sum(o.killed for o in outcomes) == 1, "the kill did not land mid-batch"
        assert all(o.busy or o.finished for o in outcomes if not o.killed), outcomes
    else:
        finishers = [o for o in outcomes if o.finished]
        assert finishers, outcomes
        # One applies; the other was refused, or came after it and sent nothing.
        (applier,) = senders or finishers[:1]
        assert applier.posts == wave_posts, (outcomes, wave_posts)
        other = next(o for o in outcomes if o is not applier)
        assert other.busy or (other.finished and other.posts == 0), outcomes
    return outcomes


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_one_batch_twenty_rounds_with_kills(
    sandbox: SandboxServer, postgres_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    ctx = multiprocessing.get_context("forkserver")
    # The workers fork from a server that has imported the applier once (~1 s saved per start).
    ctx.set_forkserver_preload(["tests.changes.apply_child"])
    refusals = kills = 0
    with Ledger(postgres_url) as ledger:
        for number in range(1, ROUNDS + 1):
            text, uids = build_csv(sandbox, reschedules=1, cancels=4)
            batch_id = f"round-{number}"
            journal_before = len(sandbox.store.journal())
            kill_after = rng.uniform(*KILL_AFTER_S) if rng.random() < KILL_SHARE else None
            sandbox.set_faults(LATENCY)
            where = tmp_path / batch_id
            waves = [
                _wave(ctx, sandbox, ledger, postgres_url, text, where / "1", batch_id, kill_after)
            ]
            if kill_after is not None:
                kills += 1
                waves.append(
                    _wave(ctx, sandbox, ledger, postgres_url, text, where / "2", batch_id, None)
                )
            sandbox.clear_faults()
            refusals += sum(o.busy for wave in waves for o in wave)

            posts = [e for e in sandbox.store.journal(journal_before) if e["method"] == "POST"]
            once = Counter(dict.fromkeys(uids, 1))
            assert Counter(str(e["booking_uid"]) for e in posts) == once, f"round {number}"
            assert all(e["changed"] for e in posts), f"round {number}"
            parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
            assert_server_matches(sandbox, parsed, postgres_url, batch_id)
    assert kills >= ROUNDS // 4, "the seed scheduled too few kills to mean anything"
    assert refusals >= ROUNDS // 2, "the workers hardly ever raced"
