"""Booking contacts of a day, from its bookings: re-read only for bookings that changed."""

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import (
    AsyncJicooClient,
    FetchReport,
)
from jicoo_connector.errors import (
    ExtractError,
    MissingPartitionError,
    NotFoundError,
    PermissionDeniedError,
)
from jicoo_connector.extract.days import _days
from jicoo_connector.extract.defaults import (
    _STOPS_THE_RUN,
    BATCH_ROWS,
    BOOKING_VERSION_COLUMNS,
    CONTACTS_STATE_KEY,
    DEFAULT_CHUNK_DAYS,
    DEFAULT_FANOUT_CONCURRENCY,
)
from jicoo_connector.extract.fanout import _bounded, _wall_clocked
from jicoo_connector.extract.results import ExtractResult, Records, _skipped, _write
from jicoo_connector.settings import Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import (
    TABLES,
    contact_rows,
    to_record_batch,
)

logger = logging.getLogger(__name__)


async def _contacts_of_bookings(
    client: AsyncJicooClient, uids: Sequence[str], fanout: int
) -> tuple[list[Records], FetchReport]:
    """Each booking's contact rows (in ``uids`` order) and a report of the calls."""
    started = time.monotonic()
    calls = FetchReport()

    async def contacts_of(uid: str) -> Records:
        try:
            contacts: list[Mapping[str, object]] = list(
                await client.list_booking_contacts(uid, report=calls)
            )
        except NotFoundError:
            # Deleted between the listing and this call: it has no contacts any more.
            logger.warning("booking %s vanished before its contacts were read", uid)
            return []
        return list(contact_rows(uid, contacts))

    per_booking = await _bounded(fanout)(contacts_of, uids)
    return per_booking, _wall_clocked(calls, started)


def _booking_versions(bookings: pa.RecordBatch | pa.Table) -> pa.Table:
    """The columns a booking's contacts are assumed to depend on, in the partition's order."""
    table = bookings if isinstance(bookings, pa.Table) else pa.Table.from_batches([bookings])
    return table.select(list(BOOKING_VERSION_COLUMNS))


def _version_map(versions: pa.Table) -> dict[str, list[object]]:
    """uid -> [updatedAt in ms since the epoch, status]: the footer's JSON, and what it is
    compared with."""
    updated = versions.column("updated_at").cast(pa.int64()).to_pylist()
    return {
        str(uid): [ms, status]
        for uid, ms, status in zip(
            versions.column("uid").to_pylist(),
            updated,
            versions.column("status").to_pylist(),
            strict=True,
        )
    }


@dataclass(frozen=True, slots=True)
class _ContactsPlan:
    """One day's contacts: the bookings whose contacts are read from the API, and the rows kept
    from the previous extract for the others (unchanged since)."""

    day: dt.date
    versions: pa.Table
    fetch: list[str]
    kept: pa.Table | None

    @property
    def reused(self) -> int:
        return self.versions.num_rows - len(self.fetch)


def _plan_contacts(
    store: ParquetStore, day: dt.date, versions: pa.Table, *, full: bool
) -> _ContactsPlan:
    now = _version_map(versions)
    footer = None if full else store.partition_metadata("booking_contacts", day)
    raw = (footer or {}).get(CONTACTS_STATE_KEY)
    if raw is None:
        # First extract of the day, a full one, or a file from before versions were recorded.
        return _ContactsPlan(day, versions, list(now), None)
    before = json.loads(raw)
    fetch = [uid for uid, version in now.items() if before.get(uid) != version]
    unchanged = pa.array(
        [uid for uid, version in now.items() if before.get(uid) == version], pa.string()
    )
    previous = store.read_partition("booking_contacts", day)
    kept = previous.filter(pc.is_in(previous.column("booking_uid"), value_set=unchanged))
    return _ContactsPlan(day, versions, fetch, kept)


async def _contacts_of_days(
    client: AsyncJicooClient,
    store: ParquetStore,
    days: Sequence[tuple[dt.date, pa.Table]],
    *,
    full: bool,
    extracted_at: dt.datetime,
    run_id: str | None,
) -> list[ExtractResult]:
    """Each day's contacts partition, from its bookings' versions (``_booking_versions``).

    A booking's contacts are read only when it is new or its updatedAt or status changed since
    the day's last extract (``full``: always); the others' rows are carried over from the
    previous file. All days' calls run as one fan-out. The calls' report goes to the first day.
    """
    plans = [
        await asyncio.to_thread(_plan_contacts, store, day, versions, full=full)
        for day, versions in days
    ]
    per_booking, calls = await _contacts_of_bookings(
        client, [uid for plan in plans for uid in plan.fetch], DEFAULT_FANOUT_CONCURRENCY
    )
    results: list[ExtractResult] = []
    offset = 0
    for plan in plans:
        fetched = per_booking[offset : offset + len(plan.fetch)]
        offset += len(plan.fetch)
        rows = [row for rows_of_one in fetched for row in rows_of_one]
        written, quality = await asyncio.to_thread(
            _write,
            store,
            "booking_contacts",
            plan.day,
            _contact_batches(plan, rows, extracted_at, run_id),
            booking_uids=plan.versions.column("uid"),
            metadata={CONTACTS_STATE_KEY: json.dumps(_version_map(plan.versions))},
        )
        results.append(
            ExtractResult(
                "booking_contacts",
                plan.day,
                written.rows,
                written.path,
                calls if not results else FetchReport(),
                None,
                quality=quality,
                contacts_fetched=len(plan.fetch),
                contacts_reused=plan.reused,
            )
        )
    return results


def _contact_batches(
    plan: _ContactsPlan, rows: Records, extracted_at: dt.datetime, run_id: str | None
) -> Iterator[pa.RecordBatch]:
    """The day's contacts, fetched and kept, in the bookings' order (as a full extract writes
    them). Kept rows keep their lineage: ``_extracted_at`` says when the API was read."""
    fetched = [
        to_record_batch(
            "booking_contacts",
            rows[offset : offset + BATCH_ROWS],
            extracted_at=extracted_at,
            run_id=run_id,
            partition_value=plan.day,
        )
        for offset in range(0, len(rows), BATCH_ROWS)
    ]
    parts = [pa.Table.from_batches(fetched, TABLES["booking_contacts"].schema)]
    if plan.kept is not None:
        parts.append(plan.kept)
    day = pa.concat_tables(parts)
    rank = pc.index_in(day.column("booking_uid"), value_set=plan.versions.column("uid"))
    ordered = (
        day.append_column("_rank", rank)
        .sort_by([("_rank", "ascending"), ("contact_index", "ascending")])
        .drop_columns(["_rank"])
    )
    yield from ordered.to_batches(max_chunksize=BATCH_ROWS)


def extract_contacts(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    out_root: str,
    progress: Callable[[ExtractResult], None] | None = None,
    *,
    run_id: str | None = None,
    full: bool = False,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
) -> list[ExtractResult]:
    """The contacts of every day in ``[start, end]`` from the bookings partitions already
    written there (by this run or an earlier one): no bookings listing.

    Contacts are read only for bookings that are new or whose updatedAt or status changed since
    the day's last contacts extract; ``full`` reads them all. Days are handled ``chunk_days`` at
    a time. Raises ``MissingPartitionError`` before any request if a day has no bookings
    partition; failures otherwise as ``extract_range``.
    """
    store = ParquetStore(out_root)
    days = _days(start, end)
    missing = [day for day in days if not store.has_partition("bookings", day)]
    if missing:
        raise MissingPartitionError(
            "bookings", missing, "extract bookings for these days first (jicoo/bookings)"
        )
    chunks = [days[i : i + chunk_days] for i in range(0, len(days), max(1, chunk_days))]
    return asyncio.run(_run_contacts(settings, chunks, store, progress, run_id, full))


async def _run_contacts(
    settings: Settings,
    chunks: Sequence[Sequence[dt.date]],
    store: ParquetStore,
    progress: Callable[[ExtractResult], None] | None,
    run_id: str | None,
    full: bool,
) -> list[ExtractResult]:
    results: list[ExtractResult] = []
    errors: list[Exception] = []
    async with AsyncJicooClient(settings) as client:
        for chunk in chunks:
            versions = [(day, await asyncio.to_thread(_read_versions, store, day)) for day in chunk]
            try:
                done = await _contacts_of_days(
                    client,
                    store,
                    versions,
                    full=full,
                    extracted_at=dt.datetime.now(dt.UTC),
                    run_id=run_id,
                )
            except PermissionDeniedError as denied:
                done = [_skipped("booking_contacts", day, denied) for day in chunk]
            except Exception as exc:  # noqa: BLE001 - one chunk must not stop the others
                what = f"booking_contacts {chunk[0]}..{chunk[-1]}"
                logger.error("extracting %s failed: %s", what, exc)
                exc.add_note(f"while extracting {what}")
                errors.append(exc)
                if isinstance(exc, _STOPS_THE_RUN):
                    break
                continue
            for result in done:
                results.append(result)
                if progress is not None:
                    progress(result)
    if errors:
        total = sum(len(chunk) for chunk in chunks)
        raise ExtractError(f"{total - len(results)} of {total} partitions failed", errors)
    return results


def _read_versions(store: ParquetStore, day: dt.date) -> pa.Table:
    return store.read_partition("bookings", day, columns=BOOKING_VERSION_COLUMNS)
