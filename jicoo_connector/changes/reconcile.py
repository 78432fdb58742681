"""What a read-back means for a change whose POST may have left: pure decisions, no I/O.

The applier reads the booking back and asks ``decide_readback`` (after an in-doubt POST or a
crash) or ``decide_after_422`` (after a 422 that may be our own earlier effect); it then
records what the decision says, or sends once more. Tested like ``client._retry.decide``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from jicoo_connector._compat import StrEnum
from jicoo_connector.changes.changeset import Action, Change
from jicoo_connector.changes.plan import parse_instant

__all__ = [
    "Decision",
    "ReadBack",
    "ReadFailed",
    "Step",
    "at_target",
    "decide_after_422",
    "decide_readback",
    "untouched",
]


class Step(StrEnum):
    """What to do next with a change: record a final state, keep it, or send it again."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    CONFLICT = "conflict"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    PENDING = "pending"
    RESEND = "resend"


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """The read-back itself failed (``error`` names the exception type)."""

    error: str


# The booking as read back: its body, None when the API says 404, or the read's failure.
ReadBack: TypeAlias = Mapping[str, object] | ReadFailed | None


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    reason: str | None = None
    http_status: int | None = None


def at_target(change: Change, booking: Mapping[str, object]) -> bool:
    """The booking already shows what the change asks for."""
    if change.action is Action.CANCEL:
        return booking.get("status") == "cancel"
    return (
        booking.get("status") != "cancel"
        and parse_instant(booking.get("startedAt")) == change.new_started_at
    )


def untouched(before: Mapping[str, object], now: Mapping[str, object]) -> bool:
    """Nobody (our POST included) changed the booking between ``before`` and ``now``."""
    # updatedAt moves on every effective write, so an equal one proves our POST did not apply.
    return all(before.get(name) == now.get(name) for name in ("status", "updatedAt")) and (
        parse_instant(before.get("startedAt")) == parse_instant(now.get("startedAt"))
    )


def decide_readback(
    change: Change,
    before: Mapping[str, object],
    now: ReadBack,
    *,
    sends: int,
    resends_left: int,
) -> Decision:
    """After a POST that may have applied: ``before`` is the booking when we sent, ``now`` the
    read-back, ``sends`` how many POSTs the ledger counts, ``resends_left`` this run's budget.

    Conflict only when someone else changed the booking; a booking every read-back showed
    untouched is resent while the budget lasts, then stays pending for the next run.
    """
    if isinstance(now, ReadFailed):
        return Decision(Step.IN_DOUBT, f"read-back failed: {now.error}")
    if now is None:
        return Decision(Step.CONFLICT, "booking vanished", http_status=404)
    if at_target(change, now):
        return Decision(Step.APPLIED, "confirmed by read-back")
    if not untouched(before, now):
        return Decision(
            Step.CONFLICT, "booking changed by someone else while our request was in doubt"
        )
    if resends_left > 0:
        return Decision(Step.RESEND)
    return Decision(
        Step.PENDING,
        f"not applied after {sends} sends, each read back untouched; the next run resends it",
    )


def decide_after_422(change: Change, now: ReadBack, *, resend: bool, message: str) -> Decision:
    """After a 422 (``message`` is the server's): a failure, unless the read-back ``now`` shows
    the target reached. Only a cancel (of a cancelled booking) or a resend (meeting its own
    earlier effect) is read back; otherwise pass ``now=None``."""
    if isinstance(now, ReadFailed):
        return Decision(Step.IN_DOUBT, message, http_status=422)
    if now is not None and at_target(change, now):
        step = Step.APPLIED if resend else Step.ALREADY_APPLIED
        return Decision(step, f"read-back: {message}", http_status=422)
    return Decision(Step.FAILED, message, http_status=422)
