"""Pure read-back decisions: applied, resend, pending, conflict, in doubt (issue 16's rule)."""

import datetime as dt
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector.changes.changeset import Action, Change
from jicoo_connector.changes.reconcile import (
    ReadBack,
    ReadFailed,
    Step,
    decide_after_422,
    decide_readback,
)

TARGET = dt.datetime(2027, 2, 3, 1, 0, tzinfo=dt.UTC)
BEFORE: Mapping[str, object] = {
    "uid": "b1",
    "status": "open",
    "startedAt": "2027-02-01T01:00:00.000Z",
    "updatedAt": "2027-01-20T00:00:00.000Z",
}
MOVED = {**BEFORE, "startedAt": "2027-02-03T10:00:00+09:00", "updatedAt": "2027-01-31T00:00:00Z"}
CANCELLED = {**BEFORE, "status": "cancel", "updatedAt": "2027-01-31T00:00:00Z"}
# Someone else moved it elsewhere: a new updatedAt, not our target.
OTHERS = {**BEFORE, "startedAt": "2027-02-05T01:00:00Z", "updatedAt": "2027-01-31T00:00:00Z"}
# Only updatedAt moved (a note edited, say): still someone else's write.
TOUCHED = {**BEFORE, "updatedAt": "2027-01-31T00:00:00Z"}
# The same instant written with an offset is the same booking time.
SAME_TIME = {**BEFORE, "startedAt": "2027-02-01T10:00:00+09:00"}


def _change(action: Action) -> Change:
    return Change(
        key="k1",
        row=2,
        action=action,
        booking_uid="b1",
        new_started_at=TARGET if action is Action.RESCHEDULE else None,
        time_zone="Asia/Tokyo" if action is Action.RESCHEDULE else None,
        cancel_reason=None,
        change_id=None,
    )


RESCHEDULE, CANCEL = _change(Action.RESCHEDULE), _change(Action.CANCEL)


@pytest.mark.parametrize(
    ("change", "now", "resends_left", "step", "http_status"),
    [
        (RESCHEDULE, ReadFailed("TransportError"), 1, Step.IN_DOUBT, None),
        (RESCHEDULE, None, 1, Step.CONFLICT, 404),
        (RESCHEDULE, MOVED, 0, Step.APPLIED, None),
        (CANCEL, CANCELLED, 0, Step.APPLIED, None),
        (RESCHEDULE, OTHERS, 1, Step.CONFLICT, None),
        (RESCHEDULE, TOUCHED, 1, Step.CONFLICT, None),
        (CANCEL, MOVED, 1, Step.CONFLICT, None),
        (RESCHEDULE, CANCELLED, 1, Step.CONFLICT, None),
        (RESCHEDULE, BEFORE, 1, Step.RESEND, None),
        (RESCHEDULE, SAME_TIME, 1, Step.RESEND, None),
        (CANCEL, BEFORE, 2, Step.RESEND, None),
        (RESCHEDULE, BEFORE, 0, Step.PENDING, None),
        (CANCEL, BEFORE, 0, Step.PENDING, None),
    ],
)
def test_readback_table(
    change: Change, now: ReadBack, resends_left: int, step: Step, http_status: int | None
) -> None:
    decision = decide_readback(change, BEFORE, now, sends=2, resends_left=resends_left)
    assert (decision.step, decision.http_status) == (step, http_status)
    assert (decision.reason is None) == (step is Step.RESEND)


def test_pending_reason_counts_the_sends_and_says_what_happens_next() -> None:
    decision = decide_readback(RESCHEDULE, BEFORE, BEFORE, sends=3, resends_left=0)
    assert decision.reason == (
        "not applied after 3 sends, each read back untouched; the next run resends it"
    )


BOOKINGS = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["open", "cancel"]),
        "startedAt": st.sampled_from(
            [BEFORE["startedAt"], MOVED["startedAt"], OTHERS["startedAt"], "garbage"]
        ),
        "updatedAt": st.sampled_from([BEFORE["updatedAt"], MOVED["updatedAt"], None]),
    }
)


@given(
    action=st.sampled_from(list(Action)),
    now=BOOKINGS,
    sends=st.integers(min_value=1, max_value=50),
    resends_left=st.integers(min_value=0, max_value=3),
)
def test_untouched_never_conflicts_and_changed_never_resends(
    action: Action, now: dict[str, object], sends: int, resends_left: int
) -> None:
    change = _change(action)
    decision = decide_readback(change, BEFORE, now, sends=sends, resends_left=resends_left)
    unchanged = now == {k: BEFORE[k] for k in now}
    if decision.step is Step.APPLIED:
        return
    if unchanged:
        # Issue 16: a booking every read-back showed untouched stays ours to send.
        assert decision.step is (Step.RESEND if resends_left else Step.PENDING)
    else:
        assert decision.step is Step.CONFLICT


@given(now=BOOKINGS, resends_left=st.integers(min_value=0, max_value=3))
def test_a_booking_at_target_is_applied_whatever_the_budget(
    now: dict[str, object], resends_left: int
) -> None:
    reached = {**now, "status": "cancel"}
    decision = decide_readback(CANCEL, BEFORE, reached, sends=1, resends_left=resends_left)
    assert decision.step is Step.APPLIED


@pytest.mark.parametrize(
    ("change", "now", "resend", "step"),
    [
        (CANCEL, CANCELLED, False, Step.ALREADY_APPLIED),
        (CANCEL, CANCELLED, True, Step.APPLIED),
        (RESCHEDULE, MOVED, True, Step.APPLIED),
        (CANCEL, BEFORE, False, Step.FAILED),
        (RESCHEDULE, None, False, Step.FAILED),
        (CANCEL, None, False, Step.FAILED),
        (CANCEL, ReadFailed("TransportError"), False, Step.IN_DOUBT),
    ],
)
def test_after_422_table(change: Change, now: ReadBack, resend: bool, step: Step) -> None:
    decision = decide_after_422(change, now, resend=resend, message="slot taken")
    assert decision.step is step
    assert decision.http_status == 422
    assert decision.reason == (
        "read-back: slot taken" if now in (CANCELLED, MOVED) else "slot taken"
    )
