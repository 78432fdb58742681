"""Instants as the sandbox keeps and writes them: epoch milliseconds (UTC) in, and
``2024-03-01T20:00:00.000Z`` out, as text or as its JSON bytes."""

import datetime as dt
import sys
import time
from functools import lru_cache
from typing import Final

if sys.version_info < (3, 11):
    # Reads "...Z" and any number of fraction digits as 3.11's fromisoformat does (3.10 only).
    from backports.datetime_fromisoformat import datetime_fromisoformat

__all__ = [
    "EPOCH",
    "MINUTES_PER_DAY",
    "MINUTES_PER_HOUR",
    "MS_PER_DAY",
    "MS_PER_MINUTE",
    "MS_PER_S",
    "ONE_MS",
    "format_ms",
    "json_instant",
    "parse_datetime",
]

MS_PER_S: Final = 1000
SECONDS_PER_MINUTE: Final = 60
MS_PER_MINUTE: Final = SECONDS_PER_MINUTE * MS_PER_S
MS_PER_DAY: Final = 24 * 60 * MS_PER_MINUTE
MINUTES_PER_HOUR: Final = 60
MINUTES_PER_DAY: Final = 24 * MINUTES_PER_HOUR
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
ONE_MS: Final = dt.timedelta(milliseconds=1)


def parse_datetime(text: str) -> dt.datetime:
    """``datetime.fromisoformat`` as Python 3.11 reads it (``...Z``, any fraction digits)."""
    if sys.version_info >= (3, 11):
        return dt.datetime.fromisoformat(text)
    parsed: dt.datetime = datetime_fromisoformat(text)
    return parsed


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * MS_PER_DAY // MS_PER_S))


def format_ms(ms: int) -> str:
    """``2024-03-01T20:00:00.000Z``; integer arithmetic plus a per-day cache (hot path)."""
    day, rest = divmod(ms, MS_PER_DAY)
    minutes, millis = divmod(rest, MS_PER_MINUTE)
    hour, minute = divmod(minutes, MINUTES_PER_HOUR)
    second, milli = divmod(millis, MS_PER_S)
    return f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


# json_instant's lookup tables: "HH:MM:" per minute of the day, "SS." per second, "mmmZ"" per ms.
_JSON_HOUR_MINUTE: Final = tuple(
    f"{hour:02d}:{minute:02d}:".encode() for hour in range(24) for minute in range(MINUTES_PER_HOUR)
)
_JSON_SECOND: Final = tuple(f"{second:02d}.".encode() for second in range(SECONDS_PER_MINUTE))
_JSON_MILLI: Final = tuple(f'{milli:03d}Z"'.encode() for milli in range(MS_PER_S))
_json_day_prefixes: dict[int, bytes] = {}


def json_instant(ms: int) -> bytes:
    """``orjson.dumps(format_ms(ms))`` (``b'"2024-03-01T20:00:00.000Z"'``) by table lookups.

    Serialising a booking formats four or five instants: this is the hottest code of a cold page.
    """
    day, rest = divmod(ms, MS_PER_DAY)
    seconds, milli = divmod(rest, MS_PER_S)
    minutes, second = divmod(seconds, SECONDS_PER_MINUTE)
    prefix = _json_day_prefixes.get(day)
    if prefix is None:
        prefix = _json_day_prefixes[day] = b'"' + _day_prefix(day).encode()
    return prefix + _JSON_HOUR_MINUTE[minutes] + _JSON_SECOND[second] + _JSON_MILLI[milli]
