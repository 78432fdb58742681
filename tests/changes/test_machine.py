"""The write-back state machine, without I/O: its moves, and its decisions after reading,
sending and reading back (issue 16's rule: untouched is no conflict)."""

import datetime as dt
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector.changes import FINAL_STATES, IN_FLIGHT_STATES, Action, Change, State
from jicoo_connector.changes._machine import (
    NOT_PLANNED,
    TRANSITIONS,
    Answer,
    Course,
    Planned,
    Precondition,
    Step,
    Verdict,
    advance,
    allowed,
    begin,
    verdict_of,
)
from jicoo_connector.errors import (
    AuthenticationError,
    BadRequestError,
    InDoubtError,
    JicooError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)

TARGET = dt.datetime(2027, 2, 3, 1, 0, tzinfo=dt.UTC)
BEFORE: Mapping[str, object] = {
    "uid": "b1",
    "status": "open",
    "startedAt": "2027-02-01T01:00:00.000Z",
    "updatedAt": "2027-01-20T00:00:00.000Z",
    "timeZone": "Asia/Tokyo",
}
MOVED = {**BEFORE, "startedAt": "2027-02-03T10:00:00+09:00", "updatedAt": "2027-01-31T00:00:00Z"}
CANCELLED = {**BEFORE, "status": "cancel", "updatedAt": "2027-01-31T00:00:00Z"}
# Someone else moved it elsewhere: a new updatedAt, not our target.
OTHERS = {**BEFORE, "startedAt": "2027-02-05T01:00:00Z", "updatedAt": "2027-01-31T00:00:00Z"}
# Only updatedAt moved (a note edited, say): still someone else's write.
TOUCHED = {**BEFORE, "updatedAt": "2027-01-31T00:00:00Z"}
# The same instant written with an offset is the same booking time.
SAME_TIME = {**BEFORE, "startedAt": "2027-02-01T10:00:00+09:00"}


def _status_error(kind: type[JicooError], status: int, message: str = "") -> JicooError:
    errors = {"message": message} if message else None
    return kind(f"HTTP {status}", status_code=status, method="POST", endpoint="x", errors=errors)  # type: ignore[call-arg]


GONE = _status_error(NotFoundError, 404)
NO_ANSWER = TransportError("connection reset", method="GET", endpoint="x")


def _change(action: Action, time_zone: str | None = "Asia/Tokyo") -> Change:
    return Change(
        key="k1",
        row=2,
        action=action,
        booking_uid="b1",
        new_started_at=TARGET if action is Action.RESCHEDULE else None,
        time_zone=time_zone if action is Action.RESCHEDULE else None,
        cancel_reason=None,
        change_id=None,
    )


RESCHEDULE, CANCEL = _change(Action.RESCHEDULE), _change(Action.CANCEL)


def _sent(change: Change, *, resent: bool = False) -> Course:
    """A change whose POST just left (its intent recorded), as a run holds it."""
    return Course(
        change, State.INTENT, Step.SEND, before=BEFORE, sends=1, resends_left=1, resent=resent
    )


def _in_doubt(change: Change, *, sends: int = 2, resends_left: int = 1) -> Course:
    return begin(change, State.IN_DOUBT, before=BEFORE, sends=sends, max_resends=resends_left)


# -- the moves ------------------------------------------------------------------------------


def test_no_post_leaves_without_an_intent_and_no_final_state_is_left() -> None:
    for state in State:
        reaches_sent = allowed(state, State.APPLIED) or allowed(state, State.IN_DOUBT)
        assert reaches_sent == (state in IN_FLIGHT_STATES), state
        if state in FINAL_STATES:
            assert TRANSITIONS[state] == frozenset()
    assert allowed(State.PENDING, State.INTENT)


def test_a_run_starts_where_the_ledger_left_each_change() -> None:
    assert begin(CANCEL).next is Step.READ
    assert begin(CANCEL, State.INTENT, before=BEFORE).next is Step.READ_BACK
    assert begin(CANCEL, State.IN_DOUBT, before=BEFORE).next is Step.READ_BACK
    for state in FINAL_STATES:
        assert begin(CANCEL, state).next is None


# -- after reading --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "answer", "state", "verdict"),
    [
        (RESCHEDULE, BEFORE, State.INTENT, Verdict.WILL_APPLY),
        (RESCHEDULE, GONE, State.CONFLICT, Verdict.CONFLICT),
        (RESCHEDULE, CANCELLED, State.CONFLICT, Verdict.CONFLICT),
        (RESCHEDULE, MOVED, State.ALREADY_APPLIED, Verdict.ALREADY_IN_TARGET),
        (CANCEL, BEFORE, State.INTENT, Verdict.WILL_APPLY),
        (CANCEL, CANCELLED, State.ALREADY_APPLIED, Verdict.ALREADY_IN_TARGET),
        (_change(Action.RESCHEDULE, None), {**BEFORE, "timeZone": None}, State.FAILED,
         Verdict.INVALID),
    ],
)  # fmt: skip
def test_after_read_table_is_also_the_plans(
    change: Change, answer: Answer, state: State, verdict: Verdict
) -> None:
    decided = advance(begin(change), answer)
    assert decided.state is state
    assert (decided.next is Step.SEND) == (state is State.INTENT)
    assert decided.sends == (1 if state is State.INTENT else 0)
    # The dry run names the same decision: plan and apply cannot disagree.
    assert verdict_of(decided) is verdict


def test_a_failed_read_sends_nothing_and_stays_pending() -> None:
    decided = advance(begin(CANCEL), _status_error(AuthenticationError, 401, "bad key"))
    assert (decided.state, decided.next, decided.sends) == (State.PENDING, None, 0)
    assert decided.reason is not None
    assert decided.reason.startswith("not sent: read failed")


@pytest.mark.parametrize(
    ("planned", "state", "reason"),
    [
        (NOT_PLANNED, State.CONFLICT, "change is not in the plan"),
        (Planned(Verdict.SLOT_NOT_BOOKABLE, "full", None), State.FAILED,
         "plan: slot_not_bookable: full"),
        (Planned(Verdict.INVALID, "past", None), State.FAILED, "plan: invalid: past"),
        (Planned(Verdict.CONFLICT, "gone", None), State.CONFLICT, "plan: conflict: gone"),
        (Planned(Verdict.WILL_APPLY, "ok", Precondition.of(TOUCHED)), State.CONFLICT,
         "booking changed since the plan (updatedAt 2027-01-31T00:00:00Z -> "
         "2027-01-20T00:00:00.000Z)"),
        (Planned(Verdict.WILL_APPLY, "ok", Precondition.of(BEFORE)), State.INTENT,
         "move from 2027-02-01T01:00:00.000Z to 2027-02-03T01:00:00.000Z"),
    ],
)  # fmt: skip
def test_a_run_by_a_plan_sends_only_what_the_plan_let_through(
    planned: Planned, state: State, reason: str
) -> None:
    decided = advance(begin(RESCHEDULE, planned=planned), BEFORE)
    assert (decided.state, decided.reason) == (state, reason)


# -- after sending --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "answer", "state", "http_status", "next_step"),
    [
        (RESCHEDULE, MOVED, State.APPLIED, 200, None),
        (RESCHEDULE, _status_error(ValidationError, 422, "slot taken"), State.FAILED, 422, None),
        (CANCEL, _status_error(ValidationError, 422, "cancelled"), State.IN_DOUBT, 422,
         Step.READ_BACK),
        (RESCHEDULE, GONE, State.CONFLICT, 404, None),
        (RESCHEDULE, _status_error(RateLimitedError, 429), State.PENDING, 429, None),
        (RESCHEDULE, _status_error(AuthenticationError, 401), State.PENDING, 401, None),
        (RESCHEDULE, _status_error(PermissionDeniedError, 403), State.PENDING, 403, None),
        (RESCHEDULE, _status_error(BadRequestError, 400, "bad"), State.FAILED, 400, None),
        (RESCHEDULE, _status_error(ServerError, 502), State.IN_DOUBT, 502, Step.READ_BACK),
        (RESCHEDULE, NO_ANSWER, State.IN_DOUBT, None, Step.READ_BACK),
        (RESCHEDULE, InDoubtError("lost", method="POST", endpoint="x", sent_body=None),
         State.IN_DOUBT, None, Step.READ_BACK),
    ],
)  # fmt: skip
def test_after_send_table(
    change: Change, answer: Answer, state: State, http_status: int | None, next_step: Step | None
) -> None:
    decided = advance(_sent(change), answer)
    assert (decided.state, decided.http_status, decided.next) == (state, http_status, next_step)


def test_a_resend_refused_with_422_is_read_back() -> None:
    refused = _status_error(ValidationError, 422, "slot taken")
    decided = advance(_sent(RESCHEDULE, resent=True), refused)
    assert (decided.state, decided.next) == (State.IN_DOUBT, Step.READ_BACK)


# -- after reading back ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "now", "resends_left", "state", "http_status"),
    [
        (RESCHEDULE, NO_ANSWER, 1, State.IN_DOUBT, None),
        (RESCHEDULE, GONE, 1, State.CONFLICT, 404),
        (RESCHEDULE, MOVED, 0, State.APPLIED, None),
        (CANCEL, CANCELLED, 0, State.APPLIED, None),
        (RESCHEDULE, OTHERS, 1, State.CONFLICT, None),
        (RESCHEDULE, TOUCHED, 1, State.CONFLICT, None),
        (CANCEL, MOVED, 1, State.CONFLICT, None),
        (RESCHEDULE, CANCELLED, 1, State.CONFLICT, None),
        (RESCHEDULE, BEFORE, 1, State.INTENT, None),
        (RESCHEDULE, SAME_TIME, 1, State.INTENT, None),
        (CANCEL, BEFORE, 2, State.INTENT, None),
        (RESCHEDULE, BEFORE, 0, State.PENDING, None),
        (CANCEL, BEFORE, 0, State.PENDING, None),
    ],
)
def test_readback_table(
    change: Change, now: Answer, resends_left: int, state: State, http_status: int | None
) -> None:
    decided = advance(_in_doubt(change, resends_left=resends_left), now)
    assert (decided.state, decided.http_status) == (state, http_status)
    # A resend is a new intent, counted before its POST leaves.
    if state is State.INTENT:
        assert (decided.next, decided.sends, decided.resent) == (Step.SEND, 3, True)
        assert decided.resends_left == resends_left - 1
    else:
        assert decided.next is None


def test_pending_reason_counts_the_sends_and_says_what_happens_next() -> None:
    decided = advance(_in_doubt(RESCHEDULE, sends=3, resends_left=0), BEFORE)
    assert decided.reason == (
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
    decided = advance(_in_doubt(_change(action), sends=sends, resends_left=resends_left), now)
    unchanged = now == {k: BEFORE[k] for k in now}
    if decided.state is State.APPLIED:
        return
    if unchanged:
        # Issue 16: a booking every read-back showed untouched stays ours to send.
        assert decided.state is (State.INTENT if resends_left else State.PENDING)
    else:
        assert decided.state is State.CONFLICT


@given(now=BOOKINGS, resends_left=st.integers(min_value=0, max_value=3))
def test_a_booking_at_target_is_applied_whatever_the_budget(
    now: dict[str, object], resends_left: int
) -> None:
    reached = {**now, "status": "cancel"}
    decided = advance(_in_doubt(CANCEL, resends_left=resends_left), reached)
    assert decided.state is State.APPLIED


@pytest.mark.parametrize(
    ("change", "now", "resend", "state"),
    [
        (CANCEL, CANCELLED, False, State.ALREADY_APPLIED),
        (CANCEL, CANCELLED, True, State.APPLIED),
        (RESCHEDULE, MOVED, True, State.APPLIED),
        (CANCEL, BEFORE, False, State.FAILED),
        (RESCHEDULE, GONE, True, State.FAILED),
        (CANCEL, GONE, False, State.FAILED),
        (CANCEL, NO_ANSWER, False, State.IN_DOUBT),
    ],
)
def test_after_422_table(change: Change, now: Answer, resend: bool, state: State) -> None:
    refused = _status_error(ValidationError, 422, "slot taken")
    reading = advance(_sent(change, resent=resend), refused)
    decided = advance(reading, now)
    assert decided.state is state
    assert decided.http_status == 422
    assert decided.reason == (
        "read-back: slot taken" if now in (CANCELLED, MOVED) else "slot taken"
    )


# -- the whole course -----------------------------------------------------------------------

ANSWERS: list[Answer] = [
    BEFORE,
    MOVED,
    CANCELLED,
    OTHERS,
    GONE,
    NO_ANSWER,
    _status_error(ValidationError, 422, "no"),
    _status_error(ServerError, 503),
    _status_error(RateLimitedError, 429),
    _status_error(BadRequestError, 400),
]


@given(
    action=st.sampled_from(list(Action)),
    start=st.sampled_from([State.PENDING, State.INTENT, State.IN_DOUBT]),
    answers=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=12),
    resends=st.integers(min_value=0, max_value=2),
)
def test_every_decision_is_a_move_the_ledger_accepts(
    action: Action, start: State, answers: list[Answer], resends: int
) -> None:
    course = begin(_change(action), start, before=BEFORE, max_resends=resends)
    for answer in answers:
        if course.next is None:
            break
        following = advance(course, answer)
        assert allowed(course.state, following.state), (course, following)
        if following.next is Step.SEND:
            # A POST leaves only behind a recorded intent.
            assert following.state is State.INTENT
        course = following
