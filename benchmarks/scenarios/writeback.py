"""writeback: `jicoo apply` of 1,000 [100] cancels of open bookings against a sandbox limited
to 10 req/s (client at the same limit), a fresh sandbox per run (cancels are not repeatable):
wall time over the floor the limit alone sets for the requests it made."""

import contextlib
import csv
import datetime as dt
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from harness.base import PYTHON, SANDBOX_KEY, child_env, median
from harness.children import ChildResult, run_child, summarize
from harness.measure import Context
from harness.report import Target, targets_of
from harness.sandbox import Sandbox, SandboxSpec, SandboxUnavailableError, get_with_retry, observe

from scenarios import Scenario

ROWS_FULL = 1_000
ROWS_QUICK = 100
POOL_FULL = 6_000
POOL_QUICK = 2_000
THROTTLE_RPS = 10.0
THROTTLE_BURST = 10
TARGET_WRITEBACK_RATIO = 1.15


def run(ctx: Context) -> dict[str, object]:
    rows = ctx.size(ROWS_FULL, ROWS_QUICK)
    work = ctx.work / "writeback"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = SandboxSpec(
        bookings=ctx.size(POOL_FULL, POOL_QUICK),
        rate_limit=THROTTLE_RPS,
        burst=THROTTLE_BURST,
        anchor=ctx.anchor,
        journal=work / "journal.jsonl",
    )
    scenario: dict[str, object] = {"sandbox": spec.settings(), "rows": rows, "action": "cancel"}
    runs = [_one_run(spec, rows, run, work, ctx.anchor) for run in range(1, ctx.runs() + 1)]
    scenario["runs"] = {"apply": [asdict(r) for r in runs]}
    if any(r.ok for r in runs):
        scenario["medians"] = {"apply": summarize(runs)}
    ratios = [r.extra.get("ratio_to_floor") for r in runs if r.ok]
    scenario["ratio_to_floor"] = median([x for x in ratios if isinstance(x, float)])
    return scenario


def _one_run(spec: SandboxSpec, rows: int, run: int, work: Path, anchor: dt.date) -> ChildResult:
    # A fresh sandbox per run: the cancels of run 1 would make run 2's change set invalid.
    with Sandbox(spec) as sandbox:
        uids = open_booking_uids(sandbox, rows, anchor)
        changeset = work / f"changes-{run}.csv"
        write_cancel_changeset(changeset, uids, run)
        time.sleep(THROTTLE_BURST / THROTTLE_RPS)  # let the harness's own reads refill
        argv = [PYTHON, "-m", "jicoo_connector.cli", "apply", str(changeset)]
        argv += ["--ledger", str(work / f"ledger-{run}.sqlite")]
        # Keep the apply_log table out of the repo's data/ folder.
        argv += ["--apply-log", str(work / f"apply_log-{run}")]
        env = child_env(
            JICOO_BASE_URL=sandbox.base_url,
            JICOO_API_KEY=SANDBOX_KEY,
            JICOO_RATE_LIMIT=str(THROTTLE_RPS),
            JICOO_BURST=str(THROTTLE_BURST),
        )
        cpu_before = sandbox.cpu_seconds()
        with observe(sandbox) as seen:
            result = run_child("apply", run, argv, env, work / "logs")
        cpu_after = sandbox.cpu_seconds()
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu_s = cpu_after - cpu_before
    served = seen()
    reads = served.by_method.get("GET", 0)
    writes = served.by_method.get("POST", 0) + served.by_method.get("PATCH", 0)
    floor = (reads + writes) / THROTTLE_RPS
    span = served.span_s
    result.requests = served.counts(None)
    result.extra = {
        "reads": reads,
        "writes": writes,
        "floor_s": floor,
        "ratio_to_floor": result.wall_s / floor if floor else None,
        # First to last request the sandbox saw: start-up and imports excluded (info).
        "server_span_s": span,
        "span_ratio_to_floor": span / floor if floor and span else None,
        "journal_lines": count_lines(work / "journal.jsonl"),
    }
    result.rows = len(uids)
    if result.ok and writes < len(uids):
        result.ok = False
        result.error = f"only {writes} writes reached the sandbox for {len(uids)} rows"
    print("    " + describe_writeback(result))
    return result


def describe_writeback(result: ChildResult) -> str:
    if not result.ok:
        return f"apply run {result.run}: FAILED {result.error}"
    extra = result.extra
    ratio, span = extra["ratio_to_floor"], extra["span_ratio_to_floor"]
    return (
        f"apply run {result.run}: {result.wall_s:.1f} s wall, {extra['reads']} reads + "
        f"{extra['writes']} writes, floor {extra['floor_s']:.1f} s, "
        f"ratio {ratio if isinstance(ratio, float) else float('nan'):.3f} "
        f"(server span {span if isinstance(span, float) else float('nan'):.3f}), "
        f"{result.requests}"
    )


def count_lines(path: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return 0


def open_booking_uids(sandbox: Sandbox, wanted: int, anchor: dt.date) -> list[str]:
    """Open bookings to cancel: future ones first (safest to change), then any open one."""
    tomorrow = dt.datetime.combine(anchor + dt.timedelta(days=1), dt.time(), dt.UTC)
    future = {"startedAt": tomorrow.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    uids: list[str] = []
    with sandbox.client() as client:
        for params in (future, {}):
            page = 1
            while len(uids) < wanted:
                query = {"status": "open", "perPage": "100", "page": str(page), **params}
                data = get_with_retry(client, "/v1/bookings", query).get("data")
                if not isinstance(data, list) or not data:
                    break
                for booking in data:
                    uid = booking.get("uid") if isinstance(booking, dict) else None
                    if isinstance(uid, str) and uid not in uids and booking.get("status") == "open":
                        uids.append(uid)
                page += 1
            if len(uids) >= wanted:
                break
    if len(uids) < wanted:
        raise SandboxUnavailableError(f"only {len(uids)} open bookings for {wanted} cancels")
    return uids[:wanted]


def write_cancel_changeset(path: Path, uids: Sequence[str], run: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["change_id", "action", "booking_uid", "new_started_at", "time_zone"])
        for index, uid in enumerate(uids):
            writer.writerow([f"bench-{run}-{index:05d}", "cancel", uid, "", ""])


def targets(scenario: Mapping[str, object]) -> list[Target]:
    return targets_of(
        "writeback",
        scenario,
        ("wall / ((reads + writes) / 10 rps)", "ratio_to_floor", "<=", TARGET_WRITEBACK_RATIO),
    )


SCENARIO = Scenario("writeback", run, targets)
