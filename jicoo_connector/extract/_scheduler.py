"""The adaptive chunk sizer that keeps a feed's rows in flight within budget."""

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


class ChunkSizer:
    """Hands out consecutive chunks of ``days`` (at most ``chunk_days`` each), sized so that a
    chunk's listing holds about ``chunk_rows`` rows, and admits chunks while the rows in flight
    fit ``rows_in_flight``. The density (rows per listed day, the ``margin_days`` a listing
    reaches past its last day included) is learnt from the listings: until one finds rows,
    chunks are single days listed one at a time."""

    def __init__(
        self,
        days: Sequence[dt.date],
        *,
        chunk_days: int,
        chunk_rows: int,
        margin_days: float,
        rows_in_flight: int,
    ) -> None:
        self._days = list(days)
        self._chunk_days = chunk_days
        self._margin = margin_days
        self._budget = rows_in_flight
        self.chunk_rows = chunk_rows
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
            if self._next >= len(self._days):
                return None
            if self._density is None:
                self._probing = True
                size, density = 1, 0.0
            else:
                density = self._density
                size = int(self.chunk_rows / density - self._margin)
            size = max(1, min(self._chunk_days, size))
            chunk = self._days[self._next : self._next + size]
            self._next += len(chunk)
            rows = density * (len(chunk) + self._margin)
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
                observed = listed / (len(chunk) + self._margin)
                self._density = max(observed, self._density or 0.0)
            self._changed.notify_all()
