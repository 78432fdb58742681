"""The extractor's defaults and tunables: how wide, how concurrent, how much in memory."""

import datetime as dt
import errno
import logging

from jicoo_connector.errors import (
    AuthenticationError,
    TransportError,
)
from jicoo_connector.settings import DEFAULT_TIMEZONE

logger = logging.getLogger(__name__)


DEFAULT_ZONE = DEFAULT_TIMEZONE
DEFAULT_SLOT_HORIZON_DAYS = 14
# The API's endedAt filter keeps bookings that END by it, so a booking starting late on the last
# day is found only if the query's end reaches past its end. Jicoo event types last minutes to
# hours; one day past the run's last day covers them. Listings read only up to their own last
# day (see catalog/bookings.py), so the margin costs no rows.
DEFAULT_MAX_BOOKING_DURATION = dt.timedelta(days=1)
# Per-booking / per-user / per-event-type calls in flight; the client's rate limiter still rules.
DEFAULT_FANOUT_CONCURRENCY = 8
# extract_range lists bookings for up to this many consecutive days at once and splits the rows
# into day partitions. Each listing costs the first page of the next one (its total tells where
# this one ends) and leaves the rest of its last page unread: fewer, longer chunks cost less.
DEFAULT_CHUNK_DAYS = 7
# Listings (chunks of days, or snapshot partitions) extract_range runs at once: several, so that
# one listing's wait on the API overlaps another's.
DEFAULT_DAY_CONCURRENCY = 4
# Booking rows listed but not yet written, across all chunks in flight: memory follows this, not
# the density of the data. Chunks shrink (down to one day) and fewer run at once when days are
# busy; a chunk larger than the budget still runs, alone.
DEFAULT_ROWS_IN_FLIGHT = 24_000
BATCH_ROWS = 10_000
# Arrow work (decoding pages, splitting days, writing Parquet) runs on this many threads beside
# the event loop. One already overlaps the loop on two cores; each extra thread keeps its own
# heap in Arrow's allocator (mimalloc), so peak memory grows with every thread added.
WORKER_THREADS = 1
# Failures no other partition can escape, raised once retries are spent: the API unreachable
# (connect, reset, timeouts), the key refused (401, or 403 where it reads no bookings either)
# or a full disk. After one, extract_range starts no new partition; it would only fail again.
STOPS_THE_RUN = (TransportError, AuthenticationError)


def stops_the_run(exc: BaseException) -> bool:
    return isinstance(exc, STOPS_THE_RUN) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    )


def failure_message(cause: BaseException, written: int, total: int) -> str:
    """One line for a failed extract: why (the failure that stopped it, or the first), and
    what was done."""
    done = f"{written} of {total} partitions written, the others keep their previous data"
    if isinstance(cause, AuthenticationError):
        return f"the API refused the key ({cause}): check the API key (JICOO_API_KEY); {done}"
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        where = f" writing {cause.filename}" if cause.filename else ""
        return f"no space left on the device{where}: free some space or extract elsewhere; {done}"
    return f"{cause}; {done}"
