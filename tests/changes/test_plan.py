"""The plan's preconditions and the plan file, without a server (its verdicts are the state
machine's: test_machine; against the sandbox: test_apply)."""

from pathlib import Path

import pytest

from jicoo_connector.changes import Plan, PlannedChange, Verdict
from jicoo_connector.changes._machine import Booking, Precondition
from jicoo_connector.errors import PlanError

OPEN = {
    "uid": "bk1",
    "status": "open",
    "startedAt": "2026-11-20T01:00:00.000Z",
    "updatedAt": "2026-10-01T00:00:00.000Z",
}


def test_precondition_detects_any_change() -> None:
    pre = Precondition.of(OPEN)

    def holds(**changed: str) -> bool:
        return pre.holds_for(Booking.of({**OPEN, **changed}))

    assert holds()
    assert holds(startedAt="2026-11-20T10:00:00+09:00")  # the same instant, another offset
    assert not holds(updatedAt="2026-10-02T00:00:00.000Z")
    assert not holds(status="cancel")
    assert not holds(startedAt="2026-11-21T01:00:00.000Z")


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
