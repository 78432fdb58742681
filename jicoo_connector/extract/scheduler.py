"""The plan of a run and the adaptive chunk sizer that keeps rows in flight within budget."""

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Plan:
    day_tables: list[str]
    days: list[dt.date]
    chunk_days: int
    chunk_rows: int
    snapshots: list[tuple[str, dt.date]]
    zone: ZoneInfo
    run_id: str | None
    horizon_days: int
    max_booking_duration: dt.timedelta
    full: bool = False

    @property
    def partitions(self) -> int:
        return len(self.day_tables) * len(self.days) + len(self.snapshots)

    @property
    def margin_days(self) -> float:
        return self.max_booking_duration / dt.timedelta(days=1)


class _ChunkSizer:
    """Hands out consecutive chunks of days, sized so that a chunk's listing holds about
    ``rows_in_flight / concurrency`` rows, and admits chunks while the rows in flight fit the
    budget. The density (rows per listed day) is learnt from the listings: until one finds
    rows, chunks are single days listed one at a time."""

    def __init__(self, plan: _Plan, rows_in_flight: int, concurrency: int) -> None:
        self._plan = plan
        self._budget = rows_in_flight
        self._target = plan.chunk_rows
        self._next = 0
        self._density: float | None = None
        self._probing = False
        self._in_flight = 0.0
        self._changed = asyncio.Condition()

    async def take(self) -> tuple[list[dt.date], float] | None:
        """The next chunk and its estimated rows (admitted into the budget), or None."""
        async with self._changed:
            # Until a listing has found rows, chunks are one-day probes, one at a time.
            await self._changed.wait_for(lambda: self._density is not None or not self._probing)
            if self._next >= len(self._plan.days):
                return None
            margin = self._plan.margin_days
            if self._density is None:
                self._probing = True
                size, density = 1, 0.0
            else:
                density = self._density
                size = int(self._target / density - margin)
            size = max(1, min(self._plan.chunk_days, size))
            chunk = self._plan.days[self._next : self._next + size]
            self._next += len(chunk)
            rows = density * (len(chunk) + margin)
            await self._changed.wait_for(
                lambda: self._in_flight == 0 or self._in_flight + rows <= self._budget
            )
            self._in_flight += rows
            return chunk, rows

    async def done(self, chunk: Sequence[dt.date], rows: float, listed: int | None) -> None:
        async with self._changed:
            self._in_flight -= rows
            self._probing = False
            if listed:
                # The busiest stretch seen so far sizes what follows: memory stays bounded.
                observed = listed / (len(chunk) + self._plan.margin_days)
                self._density = max(observed, self._density or 0.0)
            self._changed.notify_all()
