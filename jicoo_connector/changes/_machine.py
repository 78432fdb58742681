"""The write-back state machine: the states of a change, the moves between them, and the decisions
after reading the booking, after sending, and after reading it back. Pure: no I/O, no clock.

The driver (``_apply``) performs the step each decision names next, hands its answer to
``advance`` and records the decision in the ledger, which refuses a move that ``TRANSITIONS``
does not allow. The dry run (``_plan``) takes the same decision after its own read and names it
(``verdict_of``), so plan and apply cannot disagree::

    pending ──read──▶ intent ──send──▶ applied | failed | conflict | pending (refused unsent)
       │                ▲       └──no answer──▶ in_doubt ──read back──▶ applied | conflict
       │                └──────── resend (read back untouched) ◀──┘            | pending
       └──read──▶ already_applied | conflict | failed | pending (read failed)

Every POST has a committed intent before it leaves: ``applied`` and ``in_doubt`` are reached only
from ``intent`` or ``in_doubt``, and a final state is never left.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum, auto
from typing import TypeAlias

from jicoo_connector._compat import StrEnum
from jicoo_connector.changes._changeset import Action, Change, parse_instant
from jicoo_connector.errors import (
    APIStatusError,
    AuthenticationError,
    JicooError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationError,
)

__all__ = [
    "DONE_STATES",
    "FINAL_STATES",
    "IN_FLIGHT_STATES",
    "NOT_PLANNED",
    "PLAN_OK_VERDICTS",
    "TRANSITIONS",
    "Answer",
    "Booking",
    "Course",
    "Planned",
    "Precondition",
    "Seen",
    "State",
    "Step",
    "Verdict",
    "advance",
    "after_read",
    "after_read_back",
    "after_send",
    "allowed",
    "at_target",
    "begin",
    "sources",
    "untouched",
    "verdict_of",
]


class State(StrEnum):
    """Where a change stands, as the ledger records it."""

    PENDING = "pending"  # not sent yet, or sent and read back untouched: a run (re)sends it
    INTENT = "intent"  # a POST is about to leave (committed before it does)
    IN_DOUBT = "in_doubt"  # a POST left and its effect is unknown: read back before resending
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    CONFLICT = "conflict"
    FAILED = "failed"


# Final states are never left: a re-run of the batch sends nothing for them.
FINAL_STATES = frozenset({State.APPLIED, State.ALREADY_APPLIED, State.CONFLICT, State.FAILED})
# The booking shows what the change asked for.
DONE_STATES = frozenset({State.APPLIED, State.ALREADY_APPLIED})
# A POST may have left: the next run reads the booking back before anything is resent.
IN_FLIGHT_STATES = frozenset({State.INTENT, State.IN_DOUBT})

_UNSENT = frozenset({State.PENDING, State.INTENT, State.ALREADY_APPLIED, State.CONFLICT})
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: _UNSENT | {State.FAILED},
    State.INTENT: frozenset(State),
    State.IN_DOUBT: frozenset(State),
    **{state: frozenset() for state in FINAL_STATES},
}


def allowed(current: State, new: State) -> bool:
    """Whether a change in ``current`` may be recorded as ``new``."""
    return new in TRANSITIONS[current]


def sources(new: State) -> frozenset[State]:
    """The states from which a change may move to ``new``."""
    return frozenset(state for state, moves in TRANSITIONS.items() if new in moves)


class Verdict(StrEnum):
    """What the dry run says applying a change would do: the plan file's words for the decision
    after reading (``verdict_of``), plus what only a plan checks (the slot, the clock)."""

    WILL_APPLY = "will_apply"
    ALREADY_IN_TARGET = "already_in_target"
    CONFLICT = "conflict"
    SLOT_NOT_BOOKABLE = "slot_not_bookable"
    INVALID = "invalid"


# Verdicts of changes the plan lets through.
PLAN_OK_VERDICTS = frozenset({Verdict.WILL_APPLY, Verdict.ALREADY_IN_TARGET})
_VERDICTS = {
    State.INTENT: Verdict.WILL_APPLY,
    State.ALREADY_APPLIED: Verdict.ALREADY_IN_TARGET,
    State.CONFLICT: Verdict.CONFLICT,
    State.FAILED: Verdict.INVALID,
}


class Step(Enum):
    """The request the driver makes next for a change."""

    READ = auto()  # GET the booking; nothing has been sent
    SEND = auto()  # POST the change; its intent is committed
    READ_BACK = auto()  # GET the booking after a POST whose effect is unknown


# What a step got: the API's answer, or the error it raised (NotFoundError: no such booking).
Answer: TypeAlias = Mapping[str, object] | JicooError


@dataclass(frozen=True, slots=True)
class Booking:
    """A booking as the decisions read it, parsed once; ``raw`` as the API gave it (the ledger
    keeps a snapshot of that)."""

    raw: Mapping[str, object]
    status: object
    started_at: dt.datetime | None
    updated_at: object
    time_zone: object

    @classmethod
    def of(cls, raw: Mapping[str, object]) -> "Booking":
        started = parse_instant(raw.get("startedAt"))
        return cls(raw, raw.get("status"), started, raw.get("updatedAt"), raw.get("timeZone"))


# A read's answer as the decisions take it.
Seen: TypeAlias = Booking | JicooError


@dataclass(frozen=True, slots=True)
class Precondition:
    """What the booking looked like when the plan was made; apply refuses if it moved."""

    updated_at: str | None
    started_at: str | None
    status: str | None

    @classmethod
    def of(cls, booking: Mapping[str, object]) -> "Precondition":
        def text(name: str) -> str | None:
            value = booking.get(name)
            return value if isinstance(value, str) else None

        return cls(text("updatedAt"), text("startedAt"), text("status"))

    def holds_for(self, booking: Booking) -> bool:
        """Nobody changed the booking since the plan saw it."""
        planned = {"updatedAt": self.updated_at, "startedAt": self.started_at}
        return untouched(Booking.of({**planned, "status": self.status}), booking)


@dataclass(frozen=True, slots=True)
class Planned:
    """What a plan said of a change, for a run that applies by that plan."""

    verdict: Verdict
    reason: str
    precondition: Precondition | None
    in_plan: bool = True

    def refusal(self, booking: Booking) -> tuple[State, str] | None:
        """The state and reason to record when the plan forbids sending, else None."""
        if not self.in_plan:
            return State.CONFLICT, "change is not in the plan"
        if self.verdict not in PLAN_OK_VERDICTS:
            state = State.CONFLICT if self.verdict is Verdict.CONFLICT else State.FAILED
            return state, f"plan: {self.verdict}: {self.reason}"
        if self.precondition is not None and not self.precondition.holds_for(booking):
            return State.CONFLICT, (
                "booking changed since the plan "
                f"(updatedAt {self.precondition.updated_at} -> {booking.updated_at})"
            )
        return None


# A run by a plan that does not hold the change.
NOT_PLANNED = Planned(Verdict.CONFLICT, "", None, in_plan=False)


@dataclass(frozen=True, slots=True)
class Course:
    """One change as a run follows it: the state to record and why, and the step that comes
    next (None: this run is done with the change)."""

    change: Change
    state: State
    next: Step | None
    reason: str | None = None
    http_status: int | None = None
    # The booking as read before the first send, and as answered or read back where it
    # explains the state.
    before: Booking | None = None
    after: Mapping[str, object] | None = None
    # The zone a reschedule is sent with: the row's, else the booking's own.
    zone: str | None = None
    # POSTs the ledger counts for the change; resends this run may still make.
    sends: int = 0
    resends_left: int = 0
    resent: bool = False
    # A 422's message while its read-back is pending.
    refused: str | None = None
    # What the plan said of the change, when the run applies by a plan.
    planned: Planned | None = None

    def ended(
        self,
        state: State,
        reason: str | None,
        *,
        http_status: int | None = None,
        before: Booking | None = None,
        after: Mapping[str, object] | None = None,
    ) -> "Course":
        """This run is done with the change: record ``state``."""
        return replace(
            self,
            state=state,
            next=None,
            reason=reason,
            http_status=http_status,
            before=self.before if before is None else before,
            after=after,
            refused=None,
        )


def begin(
    change: Change,
    state: State = State.PENDING,
    *,
    before: Mapping[str, object] | None = None,
    sends: int = 0,
    max_resends: int = 0,
    planned: Planned | None = None,
) -> Course:
    """A change as the ledger holds it at the start of a run: a pending one is read first, one
    a crashed run left in flight is read back before anything is resent."""
    step = {State.PENDING: Step.READ, State.INTENT: Step.READ_BACK, State.IN_DOUBT: Step.READ_BACK}
    return Course(
        change,
        state,
        step.get(state),
        before=Booking.of(before) if before is not None else None,
        sends=sends,
        resends_left=max_resends,
        planned=planned,
    )


def at_target(change: Change, booking: Booking) -> bool:
    """The booking already shows what the change asks for."""
    if change.action is Action.CANCEL:
        return booking.status == "cancel"
    return booking.status != "cancel" and booking.started_at == change.new_started_at


def untouched(before: Booking, now: Booking) -> bool:
    """Nobody (our POST included) changed the booking between ``before`` and ``now``."""
    # updatedAt moves on every effective write, so an equal one proves our POST did not apply.
    return (before.status, before.updated_at, before.started_at) == (
        now.status,
        now.updated_at,
        now.started_at,
    )


def after_read(course: Course, booking: Seen) -> Course:
    """Before anything is sent: the booking as read decides whether to send (``intent``)."""
    change = course.change
    if isinstance(booking, NotFoundError):
        return course.ended(State.CONFLICT, "booking not found", http_status=404)
    if isinstance(booking, JicooError):
        # Nothing was sent; the change stays pending for the next run.
        return course.ended(State.PENDING, f"not sent: read failed: {booking}")
    refused = course.planned.refusal(booking) if course.planned is not None else None
    if refused is not None:
        return course.ended(refused[0], refused[1], before=booking)
    if change.action is Action.CANCEL:
        if booking.status == "cancel":
            return _already(course, booking, "already cancelled")
        return _send(course, booking, f"cancel a {booking.status} booking")
    if booking.status == "cancel":
        reason = "booking was cancelled; it cannot be rescheduled"
        return course.ended(State.CONFLICT, reason, before=booking)
    if at_target(change, booking):
        return _already(course, booking, "booking already starts at the target")
    if not isinstance(change.time_zone or booking.time_zone, str):
        # A row without time_zone gave an offset; the booking keeps the zone it has.
        reason = "a reschedule needs a time_zone and the booking has none"
        return course.ended(State.FAILED, reason, before=booking)
    moved = f"move from {booking.raw.get('startedAt')} to {change.target}"
    return _send(course, booking, moved)


def _already(course: Course, booking: Booking, reason: str) -> Course:
    return course.ended(State.ALREADY_APPLIED, reason, before=booking, after=booking.raw)


def _send(course: Course, booking: Booking, reason: str) -> Course:
    zone = course.change.time_zone or booking.time_zone
    return replace(
        course,
        state=State.INTENT,
        next=Step.SEND,
        reason=reason,
        before=booking,
        after=None,
        zone=zone if isinstance(zone, str) else None,
        sends=course.sends + 1,
    )


def after_send(course: Course, answer: Answer) -> Course:
    """After the POST: its answer decides, or the booking is read back when the answer leaves
    the effect unknown (no answer, 5xx, or a 422 that may be our own earlier effect)."""
    if not isinstance(answer, JicooError):
        return course.ended(State.APPLIED, None, http_status=200, after=answer)
    if isinstance(answer, ValidationError):
        message = answer.server_message or "refused by the server"
        # A cancel of a cancelled booking is 422, and a resend may meet its own earlier effect:
        # only a read-back tells success from failure.
        if course.change.action is Action.CANCEL or course.resent:
            return _read_back(course, f"refused (422): {message}", 422, refused=message)
        return course.ended(State.FAILED, message, http_status=422)
    if isinstance(answer, NotFoundError):
        return course.ended(State.CONFLICT, "booking not found", http_status=404)
    if isinstance(answer, RateLimitedError | AuthenticationError | PermissionDeniedError):
        # The server refused before acting; a later run sends it.
        reason = f"not sent: {type(answer).__name__}"
        return course.ended(State.PENDING, reason, http_status=answer.status_code)
    if isinstance(answer, APIStatusError) and answer.status_code < 500:
        reason = answer.server_message or type(answer).__name__
        return course.ended(State.FAILED, reason, http_status=answer.status_code)
    # A 5xx, InDoubtError, a transport failure or a broken answer: the POST may have applied.
    status = answer.status_code if isinstance(answer, APIStatusError) else None
    return _read_back(course, f"POST in doubt ({type(answer).__name__}); reading back", status)


def _read_back(
    course: Course, reason: str, http_status: int | None, refused: str | None = None
) -> Course:
    return replace(
        course,
        state=State.IN_DOUBT,
        next=Step.READ_BACK,
        reason=reason,
        http_status=http_status,
        after=None,
        refused=refused,
    )


def after_read_back(course: Course, answer: Seen) -> Course:
    """After a POST that may have applied, the booking as read back decides: applied, someone
    else's change (conflict), still in doubt, or untouched: resent while this run's budget
    lasts, then pending for the next run."""
    if course.refused is not None:
        return _after_refusal(course, answer, course.refused)
    if isinstance(answer, NotFoundError):
        return course.ended(State.CONFLICT, "booking vanished", http_status=404)
    if isinstance(answer, JicooError):
        return course.ended(State.IN_DOUBT, f"read-back failed: {type(answer).__name__}")
    if course.before is None:
        return course.ended(State.PENDING, "intent without a snapshot")
    if at_target(course.change, answer):
        return course.ended(State.APPLIED, "confirmed by read-back", after=answer.raw)
    if not untouched(course.before, answer):
        reason = "booking changed by someone else while our request was in doubt"
        return course.ended(State.CONFLICT, reason, after=answer.raw)
    if course.resends_left > 0:
        return replace(
            _send(course, course.before, "resend: read back untouched"),
            resends_left=course.resends_left - 1,
            resent=True,
        )
    return course.ended(
        State.PENDING,
        f"not applied after {course.sends} sends, each read back untouched; "
        "the next run resends it",
    )


def _after_refusal(course: Course, answer: Seen, message: str) -> Course:
    """After a 422: a failure, unless the read-back shows the target reached."""
    if isinstance(answer, JicooError) and not isinstance(answer, NotFoundError):
        return course.ended(State.IN_DOUBT, message, http_status=422)
    if isinstance(answer, Booking) and at_target(course.change, answer):
        state = State.APPLIED if course.resent else State.ALREADY_APPLIED
        return course.ended(state, f"read-back: {message}", http_status=422, after=answer.raw)
    return course.ended(State.FAILED, message, http_status=422)


def advance(course: Course, answer: Answer) -> Course:
    """The decision once ``course.next`` was performed and got ``answer``."""
    if course.next is Step.SEND:
        return after_send(course, answer)
    # A read's answer is parsed once, here, for every decision that reads it.
    seen = answer if isinstance(answer, JicooError) else Booking.of(answer)
    if course.next is Step.READ:
        return after_read(course, seen)
    if course.next is Step.READ_BACK:
        return after_read_back(course, seen)
    raise ValueError(f"change {course.change.key} has no step to advance from")


def verdict_of(course: Course) -> Verdict:
    """The dry run's word for a decision after reading."""
    return _VERDICTS[course.state]
