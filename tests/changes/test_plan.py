"""Plan verdicts and the plan file, without a server (the sandbox tests are in test_apply)."""

import datetime as dt
from pathlib import Path

import pytest

from jicoo_connector.changes.changeset import parse_changeset
from jicoo_connector.changes.plan import (
    Plan,
    PlanError,
    PlannedChange,
    Precondition,
    Verdict,
    classify,
    parse_instant,
)

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
CSV = (
    b"action,booking_uid,new_started_at,time_zone\n"
    b"reschedule,bk1,2026-11-26T10:00+09:00,Asia/Tokyo\n"
    b"cancel,bk2,,\n"
)
OPEN = {
    "uid": "bk1",
    "status": "open",
    "startedAt": "2026-11-20T01:00:00.000Z",
    "updatedAt": "2026-10-01T00:00:00.000Z",
}


def test_classify_covers_every_state() -> None:
    resched, cancel = parse_changeset(CSV, now=NOW).changes
    assert classify(resched, None)[0] is Verdict.CONFLICT
    assert classify(resched, OPEN)[0] is Verdict.WILL_APPLY
    assert classify(resched, {**OPEN, "status": "cancel"})[0] is Verdict.CONFLICT
    at_target = {**OPEN, "startedAt": "2026-11-26T01:00:00Z"}  # no millis: parsed, not compared
    assert classify(resched, at_target)[0] is Verdict.ALREADY_IN_TARGET
    assert classify(cancel, OPEN)[0] is Verdict.WILL_APPLY
    assert classify(cancel, {**OPEN, "status": "cancel"})[0] is Verdict.ALREADY_IN_TARGET


def test_precondition_detects_any_change() -> None:
    pre = Precondition.of(OPEN)
    assert pre.holds_for(dict(OPEN))
    assert pre.holds_for({**OPEN, "startedAt": "2026-11-20T10:00:00+09:00"})
    assert not pre.holds_for({**OPEN, "updatedAt": "2026-10-02T00:00:00.000Z"})
    assert not pre.holds_for({**OPEN, "status": "cancel"})
    assert not pre.holds_for({**OPEN, "startedAt": "2026-11-21T01:00:00.000Z"})


def test_plan_file_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    plan = Plan(
        content_hash="ab" * 32,
        created_at="2026-11-01T00:00:00.000Z",
        items=[
            PlannedChange(
                row=2,
                key="k",
                action="cancel",
                booking_uid="bk2",
                target=None,
                verdict=Verdict.WILL_APPLY,
                reason="cancel an open booking",
                precondition=Precondition.of(OPEN),
            ),
            PlannedChange(
                row=3,
                key=None,
                action="nope",
                booking_uid="x",
                target=None,
                verdict=Verdict.INVALID,
                reason="action: unknown",
                precondition=None,
            ),
        ],
    )
    path = plan.write(tmp_path / "plan.json")
    assert Plan.read(path) == plan
    assert plan.counts() == {"will_apply": 1, "invalid": 1}
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(PlanError, match="not a"):
        Plan.read(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"format": "jicoo-changeset-plan/1", "items": [{}]}')
    with pytest.raises(PlanError, match="malformed"):
        Plan.read(tmp_path / "broken.json")
    with pytest.raises(PlanError, match="cannot read"):
        Plan.read(tmp_path / "missing.json")


def test_parse_instant_is_lenient_but_wants_an_offset() -> None:
    assert parse_instant("2026-11-26T01:00:00.000Z") == dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC)
    assert parse_instant("2026-11-26T10:00:00+09:00") == dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC)
    assert parse_instant("2026-11-26T01:00:00") is None
    assert parse_instant(None) is None
    assert parse_instant("soon") is None
