"""Plan and apply against the sandbox over real HTTP; the sandbox journal is the oracle."""

import asyncio
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from jicoo_connector.changes import (
    APPLY_LOG,
    ApplyReport,
    Plan,
    apply_changeset,
    apply_changeset_async,
    parse_changeset,
    plan_changeset_async,
)
from jicoo_connector.changes._apply import DEFAULT_MAX_RESENDS
from jicoo_connector.changes._changeset import parse_instant
from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import PlanError
from jicoo_sandbox.server import SandboxServer
from tests.changes.apply_child import KILL_ENV
from tests.support.sandbox import sandbox_settings
from tests.support.writeback_data import (
    HEADER,
    all_posts,
    assert_server_matches,
    build_csv,
    effective_posts,
    free_slot,
    future_open_bookings,
    host_ids,
    ledger_bytes,
)

# An off-grid minute no event type offers as a slot: the server answers 422 (slot_off_grid).
OFF_GRID = dt.timedelta(minutes=7)
CHILD = Path(__file__).with_name("apply_child.py")
# More runs than the old three-send limit that turned untouched changes into conflicts.
UNTOUCHED_RUNS = 2
SENDS_PER_RUN = 1 + DEFAULT_MAX_RESENDS


def test_a_batch_applies_exactly_once_and_a_rerun_sends_nothing(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    text, uids = build_csv(sandbox, reschedules=3, cancels=3)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    ledger = ledger_location
    report = apply_changeset(sandbox_settings(sandbox), parsed, ledger=ledger, batch_id="batch")
    assert report.counts == {"applied": 6}
    assert report.posts_sent == 6
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    assert_server_matches(sandbox, parsed, ledger)
    posts_before = all_posts(sandbox)

    again = apply_changeset(sandbox_settings(sandbox), parsed, ledger=ledger, batch_id="batch")
    assert again.posts_sent == 0
    assert all_posts(sandbox) == posts_before
    assert again.counts == {"applied": 6}
    assert [r.state for r in again.rows] == [r.state for r in report.rows]

    out = report.write_parquet(tmp_path / "apply_log.parquet")
    table = pq.read_table(out)
    assert table.schema == APPLY_LOG.schema
    assert table.num_rows == 6
    assert set(table.column("state").to_pylist()) == {"applied"}


def test_a_changed_file_under_the_same_batch_is_refused(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    text, _ = build_csv(sandbox, reschedules=0, cancels=1)
    ledger = ledger_location
    apply_changeset(
        sandbox_settings(sandbox),
        parse_changeset(text.encode(), now=sandbox.config.clock()),
        ledger=ledger,
        batch_id="b",
    )
    posts = all_posts(sandbox)
    edited = parse_changeset(
        text.replace("maintenance", "works").encode(), now=sandbox.config.clock()
    )
    with pytest.raises(Exception, match="different change-set file"):
        apply_changeset(sandbox_settings(sandbox), edited, ledger=ledger, batch_id="b")
    assert all_posts(sandbox) == posts


def test_dropped_answers_are_resolved_by_read_back_without_duplicates(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    text, uids = build_csv(sandbox, reschedules=4, cancels=8)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    # 0.2 per the brief would leave a 7% chance of no fault at all in 12 POSTs; 0.5 makes a
    # run without a dropped answer a one-in-4096 event, so the test really exercises read-back.
    sandbox.set_faults(
        {"rules": [{"kind": "drop_after_apply", "methods": ["POST"], "probability": 0.5}]}
    )
    ledger = ledger_location
    report = apply_changeset(sandbox_settings(sandbox), parsed, ledger=ledger, batch_id="batch")
    sandbox.clear_faults()
    assert report.counts == {"applied": len(uids)}
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    faulted = [e for e in sandbox.store.journal() if e["method"] == "POST" and e["fault"]]
    # Each dropped answer was a POST the ledger had to reconcile; none was sent twice.
    assert report.posts_sent == len(uids)
    assert faulted, "no POST answer was dropped: the fault profile did not act"
    assert_server_matches(sandbox, parsed, ledger)


def test_a_change_every_read_back_shows_untouched_stays_pending_until_a_run_sends_it(
    sandbox: SandboxServer, ledger_location: str
) -> None:
    text, uids = build_csv(sandbox, reschedules=1, cancels=1)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    # Every POST's connection is cut before the server acts: each send is in doubt, and each
    # read-back shows the booking untouched. Nobody else changed it, so it is no conflict.
    sandbox.set_faults({"rules": [{"kind": "reset", "methods": ["POST"]}]})
    for run in range(1, UNTOUCHED_RUNS + 1):
        report = apply_changeset(
            sandbox_settings(sandbox), parsed, ledger=ledger_location, batch_id="batch"
        )
        assert report.counts == {"pending": len(uids)}, run
        sends = run * SENDS_PER_RUN
        assert {row.attempts for row in report.rows} == {sends}
        assert {row.reason for row in report.rows} == {
            f"not applied after {sends} sends, each read back untouched; the next run resends it"
        }
    assert effective_posts(sandbox) == Counter()
    sandbox.clear_faults()
    calm = apply_changeset(
        sandbox_settings(sandbox), parsed, ledger=ledger_location, batch_id="batch"
    )
    assert calm.counts == {"applied": len(uids)}
    assert calm.posts_sent == len(uids)
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    assert_server_matches(sandbox, parsed, ledger_location)


def test_422_is_a_row_failure_with_the_servers_reason(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    bk = future_open_bookings(sandbox)[0]
    cancelled = future_open_bookings(sandbox, status="cancel")[0]
    start = parse_instant(bk["startedAt"])
    assert start is not None
    odd = (start + dt.timedelta(days=1) + OFF_GRID).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    text = (
        f"{HEADER}\n"
        f",reschedule,{bk['uid']},{odd},Asia/Tokyo,\n"
        f",cancel,{cancelled['uid']},,,\n"
        f",reschedule,{cancelled['uid']}x,{odd},Asia/Tokyo,\n"
    )
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    ledger = ledger_location
    report = apply_changeset(sandbox_settings(sandbox), parsed, ledger=ledger, batch_id="batch")
    states = {row.booking_uid: row for row in report.rows}
    failed = states[str(bk["uid"])]
    assert (failed.state, failed.http_status) == ("failed", 422)
    # Off the slot grid on any day: the sandbox refuses it like the real service would.
    assert failed.reason
    assert "grid" in failed.reason, failed.reason
    assert states[str(cancelled["uid"])].state == "already_applied"
    assert states[f"{cancelled['uid']}x"].state == "conflict"
    assert effective_posts(sandbox) == Counter()
    assert "failed 1" in report.summary()


def test_plan_classifies_and_apply_honours_preconditions(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    text, uids = build_csv(sandbox, reschedules=2, cancels=2)
    cancelled = future_open_bookings(sandbox, status="cancel")[0]
    bk = future_open_bookings(sandbox)[-1]
    start = parse_instant(bk["startedAt"])
    assert start is not None
    odd = (start + dt.timedelta(days=1) + OFF_GRID).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    text += f",cancel,{cancelled['uid']},,,\n,cancel,nosuchbooking,,,\n"
    text += f",reschedule,{bk['uid']},{odd},UTC,\n,frobnicate,x,,,\n"
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())

    async def make_plan() -> Plan:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            return await plan_changeset_async(client, parsed, now=sandbox.config.clock())

    plan = asyncio.run(make_plan())
    assert all_posts(sandbox) == 0
    assert plan.counts() == {
        "will_apply": 4,
        "already_in_target": 1,
        "conflict": 1,
        "slot_not_bookable": 1,
        "invalid": 1,
    }
    path = plan.write(tmp_path / "plan.json")
    loaded = Plan.read(path)
    assert loaded == plan
    assert json.loads(path.read_text())["content_hash"] == parsed.content_hash

    # Someone moves one planned booking: that change becomes a conflict, the rest apply.
    moved = uids[-1]
    httpx.post(
        f"{sandbox.base_url}/v1/bookings/{moved}/cancel",
        json={"cancelReason": "by hand"},
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        timeout=30,
    ).raise_for_status()
    settings = sandbox_settings(sandbox)
    report = apply_changeset(settings, parsed, plan=loaded, ledger=ledger_location, batch_id="b")
    states = {row.booking_uid: row.state for row in report.rows}
    assert states[moved] == "conflict"
    assert [states[uid] for uid in uids[:-1]] == ["applied"] * (len(uids) - 1)
    assert states["nosuchbooking"] == "conflict"
    assert states["x"] == "rejected"

    other = parse_changeset((text + ",cancel,extra1,,,\n").encode(), now=sandbox.config.clock())
    with pytest.raises(PlanError, match="another change-set file"):
        apply_changeset(settings, other, plan=loaded, ledger=ledger_location, batch_id="c")


def test_dry_run_sends_nothing_and_writes_no_ledger(sandbox: SandboxServer, tmp_path: Path) -> None:
    text, _ = build_csv(sandbox, reschedules=1, cancels=1)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    ledger = tmp_path / "ledger.sqlite"
    report = apply_changeset(
        sandbox_settings(sandbox),
        parsed,
        ledger=ledger,
        batch_id="b",
        dry_run=True,
        now=sandbox.config.clock(),
    )
    assert report.dry_run
    assert report.counts == {"will_apply": 2}
    assert all_posts(sandbox) == 0
    assert not ledger.exists()


def test_the_api_key_reaches_no_log_report_ledger_or_plan(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text, _ = build_csv(sandbox, reschedules=1, cancels=1)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    sandbox.set_faults(
        {"rules": [{"kind": "drop_after_apply", "methods": ["POST"], "probability": 0.5}]}
    )

    async def run() -> tuple[ApplyReport, Plan]:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            plan = await plan_changeset_async(client, parsed, now=sandbox.config.clock())
            report = await apply_changeset_async(
                client, parsed, ledger=ledger_location, batch_id="b"
            )
            return report, plan

    report, plan = asyncio.run(run())
    plan.write(tmp_path / "plan.json")
    report.write_parquet(tmp_path / "log.parquet")
    secret = sandbox.api_key.encode()
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    for path in files:
        assert secret not in path.read_bytes(), path.name
    stored = ledger_bytes(ledger_location)
    assert b"updatedAt" in stored
    assert secret not in stored
    assert sandbox.api_key not in caplog.text
    assert sandbox.api_key not in report.summary()
    assert sandbox.api_key not in repr(report.to_rows())


KILL_POINTS = [
    "after_intent:1",
    "after_post:1",
    "after_outcome:2",
    "after_intent:4",
    "after_post:5",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_and_resume_is_exactly_once(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str, point: str
) -> None:
    text, uids = build_csv(sandbox, reschedules=3, cancels=4)
    csv_path = tmp_path / "changes.csv"
    csv_path.write_text(text, encoding="utf-8")
    ledger = ledger_location
    env = {
        **os.environ,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        KILL_ENV: point,
    }
    now = sandbox.config.clock().isoformat()
    args = [sys.executable, str(CHILD), str(csv_path), ledger, "batch", now]
    killed = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)  # noqa: S603 - our own child script
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    env.pop(KILL_ENV)
    resumed = subprocess.run(args, env=env, capture_output=True, timeout=120, check=True)  # noqa: S603
    result = json.loads(resumed.stdout)
    assert result["counts"] == {"applied": len(uids)}
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    assert_server_matches(sandbox, parse_changeset(csv_path, now=sandbox.config.clock()), ledger)


def test_two_rows_moving_one_hosts_bookings_into_one_slot_plan_the_later_as_not_bookable(
    sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    open_bookings = future_open_bookings(sandbox)
    pair = next(
        (a, b)
        for i, a in enumerate(open_bookings)
        for b in open_bookings[i + 1 :]
        if a["eventTypeId"] == b["eventTypeId"] and host_ids(a) & host_ids(b)
    )
    stamp = free_slot(sandbox, pair[0], set())
    assert stamp is not None
    text = HEADER + "\n" + "".join(f",reschedule,{bk['uid']},{stamp},Asia/Tokyo,\n" for bk in pair)
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())

    async def make_plan() -> Plan:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            return await plan_changeset_async(client, parsed, now=sandbox.config.clock())

    plan = asyncio.run(make_plan())
    assert [item.verdict.value for item in plan.items] == ["will_apply", "slot_not_bookable"]
    assert plan.items[1].reason == "row 2 moves a booking of the same host into this slot"
    # Applying by the plan sends only the first move (the second fails unsent; the server
    # would have answered 422).
    report = apply_changeset(
        sandbox_settings(sandbox),
        parsed,
        ledger=ledger_location,
        batch_id="pair",
        plan=plan,
    )
    assert report.counts == {"applied": 1, "failed": 1}
    assert all_posts(sandbox) == 1
