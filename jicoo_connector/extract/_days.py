"""Days in a time zone: their UTC windows, and the days of a range."""

import datetime as dt
import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jicoo_connector.errors import (
    ConfigError,
)
from jicoo_connector.extract._defaults import DEFAULT_ZONE
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import TableSpec

logger = logging.getLogger(__name__)


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{name!r} is not an IANA time zone") from exc


def day_window(
    day: dt.date, zone: str | ZoneInfo = DEFAULT_ZONE
) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants ``[start, end)`` of ``day`` in ``zone``; exact across DST changes.

    >>> day_window(dt.date(2024, 3, 1), "Asia/Tokyo")[0].isoformat()
    '2024-02-29T15:00:00+00:00'
    """
    tz = zone if isinstance(zone, ZoneInfo) else zone_of(zone)

    def start_of(d: dt.date) -> dt.datetime:
        # Midnight can fall in a DST gap; zoneinfo then uses the pre-transition offset (fold=0),
        # which lands exactly on the transition instant: the day's first existing instant.
        return dt.datetime.combine(d, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)

    return start_of(day), start_of(day + dt.timedelta(days=1))


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day of ``[start, end]``."""
    if end < start:
        raise ConfigError(f"end {end} is before start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check_zone(store: ParquetStore, spec: TableSpec, zone: str) -> None:
    """Refuse to add days cut in ``zone`` to a folder whose ``table`` was cut in another zone:
    a booking would sit on one day in the old partitions and on another in the new ones (the
    same key twice). Before any request; partitions that record no zone are let be."""
    recorded = store.time_zone(spec)
    if recorded is not None and recorded != zone:
        raise ConfigError(
            f"{spec.name} in {store.root} holds days cut in {recorded}, not {zone}: extract with "
            f"the same zone (--timezone {recorded}), or into a new folder (--out NEW --full)"
        )
