"""booking_contacts: each booking's guests, one partition per day of the bookings feed. A
booking's contacts are re-read only when it is new or changed since the day's last extract."""

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.client import AsyncJicooClient, FetchReport
from jicoo_connector.errors import NotFoundError
from jicoo_connector.extract._defaults import BATCH_ROWS
from jicoo_connector.extract._fanout import bounded, wall_clocked
from jicoo_connector.extract.catalog.bookings import BOOKINGS_FEED
from jicoo_connector.extract.sources import (
    DaySource,
    ExtractContext,
    FeedDay,
    Fetched,
    Records,
)
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import UTC_MS, TableSpec, column, struct_list_column, to_record_batch

logger = logging.getLogger(__name__)

# Synthetic source keys attached to each contact (a leading underscore cannot collide with the
# API's camelCase fields).
_BOOKING_UID = "_bookingUid"
_CONTACT_INDEX = "_contactIndex"
# The footer key of a contacts partition recording each booking's version (updatedAt, status)
# when its contacts were read: the next extract re-reads only the bookings that changed.
CONTACTS_STATE_KEY = "jicoo.booking_versions"
# What a booking's contacts are assumed to depend on (see the README): its listing's columns.
BOOKING_VERSION_COLUMNS = ("uid", "updated_at", "status")

_ANSWER: list[tuple[str, str, pa.DataType]] = [
    ("question", "question", pa.string()),
    ("content", "content", pa.list_(pa.string())),
]

BOOKING_CONTACTS_SPEC = TableSpec(
    "booking_contacts",
    (
        column(
            "booking_uid",
            _BOOKING_UID,
            pa.string(),
            nullable=False,
            doc="The booking (bookings.uid) the contact belongs to.",
        ),
        column(
            "contact_index",
            _CONTACT_INDEX,
            pa.int32(),
            nullable=False,
            doc="The contact's position in the booking's contact list (with booking_uid, the key).",
        ),
        column("name", "name", pa.string(), doc="The guest's name."),
        column("email", "email", pa.string(), doc="The guest's email."),
        column(
            "cc_emails",
            "ccEmails",
            pa.list_(pa.string()),
            doc="Addresses copied on the booking's emails.",
        ),
        column("company", "company", pa.string(), doc="The guest's company."),
        column("phone_number", "phoneNumber", pa.string(), doc="The guest's phone number."),
        column("message", "message", pa.string(), doc="The guest's message to the host."),
        column(
            "text_remind_number",
            "textRemindNumber",
            pa.string(),
            doc="The number SMS reminders go to.",
        ),
        column(
            "text_remind_country_code",
            "textRemindCountryCode",
            pa.string(),
            doc="The country code of text_remind_number.",
        ),
        struct_list_column(
            "answers",
            "answers",
            _ANSWER,
            doc="The guest's answers to the booking form: question and content of each.",
        ),
        column("created_at", "createdAt", UTC_MS, doc="When the contact was recorded (UTC)."),
        column("updated_at", "updatedAt", UTC_MS, doc="When the contact last changed (UTC)."),
    ),
    ("booking_uid", "contact_index"),
    "day",
    checks=("contacts_reference_bookings",),
    description="Jicoo booking contacts (the guests of each booking), one partition per "
    "calendar day: read for the day's bookings that are new or changed since the last "
    "extract, carried over for the others.",
)


def contact_rows(
    booking_uid: str, contacts: Iterable[Mapping[str, object]]
) -> Iterator[Mapping[str, object]]:
    """Attach the booking uid and the contact's position (its stable key) to each contact."""
    for index, contact in enumerate(contacts):
        yield {**contact, _BOOKING_UID: booking_uid, _CONTACT_INDEX: index}


async def _booking_contacts(
    client: AsyncJicooClient, ctx: ExtractContext, days: Sequence[FeedDay]
) -> list[Fetched]:
    """Each day's contacts, from its bookings. All days' calls run as one fan-out; its report
    goes to the first day."""
    plans = [
        await asyncio.to_thread(
            _plan_contacts, ctx.store, day.day, _booking_versions(day.rows), full=ctx.full
        )
        for day in days
    ]
    per_booking, calls = await _contacts_of_bookings(
        client, [uid for plan in plans for uid in plan.fetch], ctx.fanout
    )
    out: list[Fetched] = []
    offset = 0
    for plan in plans:
        fetched = per_booking[offset : offset + len(plan.fetch)]
        offset += len(plan.fetch)
        rows = [row for rows_of_one in fetched for row in rows_of_one]
        data = await asyncio.to_thread(_contacts_of_day, plan, rows, ctx)
        out.append(
            Fetched(
                calls if not out else FetchReport(),
                data=data,
                booking_uids=plan.versions.column("uid"),
                footer={CONTACTS_STATE_KEY: json.dumps(_version_map(plan.versions))},
                counters={"contacts_fetched": len(plan.fetch), "contacts_reused": plan.reused},
            )
        )
    return out


BOOKING_CONTACTS = DaySource(
    BOOKING_CONTACTS_SPEC,
    ("GET /v1/bookings", "GET /v1/bookings/{uid}/contacts"),
    BOOKINGS_FEED,
    _booking_contacts,
)


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

    per_booking = await bounded(fanout)(contacts_of, uids)
    return per_booking, wall_clocked(calls, started)


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
    footer = None if full else store.partition_metadata(BOOKING_CONTACTS_SPEC, day)
    raw = (footer or {}).get(CONTACTS_STATE_KEY)
    if raw is None:
        # First extract of the day, a full one, or a file from before versions were recorded.
        return _ContactsPlan(day, versions, list(now), None)
    before = json.loads(raw)
    fetch = [uid for uid, version in now.items() if before.get(uid) != version]
    unchanged = pa.array(
        [uid for uid, version in now.items() if before.get(uid) == version], pa.string()
    )
    previous = store.read_partition(BOOKING_CONTACTS_SPEC, day)
    kept = previous.filter(pc.is_in(previous.column("booking_uid"), value_set=unchanged))
    return _ContactsPlan(day, versions, fetch, kept)


def _contacts_of_day(plan: _ContactsPlan, rows: Records, ctx: ExtractContext) -> pa.Table:
    """The day's contacts, fetched and kept, in the bookings' order (as a full extract writes
    them). Kept rows keep their lineage: ``_extracted_at`` says when the API was read."""
    fetched = [
        to_record_batch(
            BOOKING_CONTACTS_SPEC,
            rows[offset : offset + BATCH_ROWS],
            extracted_at=ctx.extracted_at,
            run_id=ctx.run_id,
            partition_value=plan.day,
        )
        for offset in range(0, len(rows), BATCH_ROWS)
    ]
    parts = [pa.Table.from_batches(fetched, BOOKING_CONTACTS_SPEC.schema)]
    if plan.kept is not None:
        parts.append(plan.kept)
    day = pa.concat_tables(parts)
    rank = pc.index_in(day.column("booking_uid"), value_set=plan.versions.column("uid"))
    return (
        day.append_column("_rank", rank)
        .sort_by([("_rank", "ascending"), ("contact_index", "ascending")])
        .drop_columns(["_rank"])
    )
