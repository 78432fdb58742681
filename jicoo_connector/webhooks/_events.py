"""What a Jicoo webhook delivery says: the event name, the booking and its instants. Pure.

Any body that is not such an event is ``WebhookPayloadError`` (the receiver's 400), however
deep, odd or out of range it is; nothing else escapes ``parse_event``.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Final

import orjson

from jicoo_connector._compat import parse_datetime
from jicoo_connector.errors import WebhookPayloadError

__all__ = [
    "CANCEL_EVENTS",
    "KNOWN_EVENTS",
    "RESCHEDULE_EVENTS",
    "WebhookEvent",
    "format_instant",
    "parse_event",
]

BOOKED_EVENTS: Final = frozenset({"guest_booked"})
RESCHEDULE_EVENTS: Final = frozenset({"guest_rescheduled", "host_rescheduled"})
CANCEL_EVENTS: Final = frozenset({"guest_cancelled", "host_cancelled"})
# Events that change a booking row; any other name is stored and ignored (Jicoo may add more).
KNOWN_EVENTS: Final = BOOKED_EVENTS | RESCHEDULE_EVENTS | CANCEL_EVENTS


# Instants outside these years are no booking's: refused (400), as datetime cannot shift some
# of them to UTC at all.
EARLIEST_YEAR: Final = 1970
LATEST_YEAR: Final = 9998


def _instant(value: object, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise WebhookPayloadError(f"{field} must be an ISO 8601 date-time string")
    try:
        parsed = parse_datetime(value)
    except ValueError:
        raise WebhookPayloadError(f"{field} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise WebhookPayloadError(f"{field} has no time zone")
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise WebhookPayloadError(f"{field} is outside {EARLIEST_YEAR}-{LATEST_YEAR}")
    return parsed.astimezone(dt.timezone.utc)


def format_instant(value: dt.datetime) -> str:
    """The API's canonical form: UTC with milliseconds and ``Z``."""
    utc = value.astimezone(dt.timezone.utc)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One delivery's event. ``(event, booking_uid, created_at)`` is its identity: a replay of
    the same event carries the same three, so it is recorded once."""

    event: str
    booking_uid: str
    created_at: str
    started_at: dt.datetime | None

    @property
    def known(self) -> bool:
        return self.event in KNOWN_EVENTS


def parse_event(body: bytes) -> WebhookEvent:
    """The event in a delivery body, or ``WebhookPayloadError`` saying what is missing.

    >>> body = b'{"event": "guest_booked", "createdAt": "2024-03-01T20:00:00Z", "object": '
    >>> parse_event(body + b'{"uid": "mzgdPJVBb7RE", "startedAt": "2024-03-05T01:00:00Z"}}').event
    'guest_booked'
    """
    try:
        # orjson refuses what would fail later: nesting past 1024 levels, lone surrogates
        # (SQLite cannot store them), NaN and infinities.
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookPayloadError(f"the body is not JSON we take ({exc.msg})") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("the body is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise WebhookPayloadError("event is missing or not a string")
    created = _instant(payload.get("createdAt"), "createdAt")
    obj = payload.get("object")
    if not isinstance(obj, dict):
        raise WebhookPayloadError("object is missing or not a JSON object")
    uid = obj.get("uid")
    if not isinstance(uid, str) or not uid:
        raise WebhookPayloadError("object.uid is missing or not a string")
    started = obj.get("startedAt")
    return WebhookEvent(
        event=event,
        booking_uid=uid,
        created_at=format_instant(created),
        started_at=None if started is None else _instant(started, "object.startedAt"),
    )
