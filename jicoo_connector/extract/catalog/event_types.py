"""event_types: what can be booked, each with its hosts (one hosts call per event type)."""

import logging
from collections.abc import Mapping, Sequence

import pyarrow as pa

from jicoo_connector.client import AsyncJicooClient, Listing
from jicoo_connector.errors import PermissionDeniedError
from jicoo_connector.extract._fanout import bounded, merged
from jicoo_connector.extract.sources import ExtractContext, Fetched, Records, SnapshotSource
from jicoo_connector.tables import UTC_MS, TableSpec, column, struct_list_column

logger = logging.getLogger(__name__)

# The synthetic source key of the hosts read for an event type.
_EVENT_TYPE_HOSTS = "_hosts"

_EVENT_TYPE_HOST: list[tuple[str, str, pa.DataType]] = [
    ("uid", "uid", pa.string()),
    ("name", "name", pa.string()),
    ("email", "email", pa.string()),
    ("profile_image", "profileImage", pa.string()),
    ("role", "role", pa.string()),
    ("priority", "priority", pa.int32()),
    ("user_type", "userType", pa.string()),
    ("sort", "sort", pa.int32()),
]


def event_type_rows(
    event_type: Mapping[str, object], hosts: Sequence[Mapping[str, object]] | None
) -> Mapping[str, object]:
    """An event type with its hosts (from the hosts endpoint); ``None`` = hosts unknown."""
    return {**event_type, _EVENT_TYPE_HOSTS: hosts}


EVENT_TYPES_SPEC = TableSpec(
    "event_types",
    (
        column("uid", "uid", pa.string(), nullable=False, doc="The event type's id."),
        column("name", "name", pa.string(), doc="The event type's name."),
        column("description", "description", pa.string(), doc="The event type's description."),
        column(
            "status",
            "status",
            pa.string(),
            doc="enable or disable (a disabled type takes no bookings).",
        ),
        column(
            "duration_minutes",
            "duration",
            pa.int32(),
            doc="How long its bookings last, in minutes.",
        ),
        column("team_id", "teamId", pa.int64(), doc="The team it belongs to."),
        column("url", "url", pa.string(), doc="Its public booking page."),
        struct_list_column(
            "hosts",
            _EVENT_TYPE_HOSTS,
            _EVENT_TYPE_HOST,
            doc="Its hosts (from GET /v1/event_type_hosts); null when the key may not read them.",
        ),
        column("created_at", "createdAt", UTC_MS, doc="When it was created (UTC)."),
        column("updated_at", "updatedAt", UTC_MS, doc="When it last changed (UTC)."),
    ),
    ("uid",),
    "snapshot",
    description="Jicoo event types (what can be booked) with their hosts, a snapshot per day.",
)


async def _fetch_event_types(client: AsyncJicooClient, ctx: ExtractContext) -> Fetched:
    listing = await client.list_event_types()
    uids = [str(et["uid"]) for et in listing.records]
    report = merged(listing.report)
    hosts: list[Listing | None]
    try:
        hosts = list(await bounded(ctx.fanout)(client.list_event_type_hosts, uids))
    except PermissionDeniedError:
        # Hosts are a detail of the event types: keep the table, leave hosts unknown (null).
        logger.warning("the API key may not list event type hosts; hosts are left null")
        hosts = [None] * len(uids)
    rows: Records = []
    for event_type, host_listing in zip(listing.records, hosts, strict=True):
        if host_listing is not None:
            report.merge(host_listing.report)
        rows.append(
            event_type_rows(event_type, None if host_listing is None else host_listing.records)
        )
    return Fetched(report, listing.total_count, rows=rows)


EVENT_TYPES = SnapshotSource(
    EVENT_TYPES_SPEC,
    ("GET /v1/event_types", "GET /v1/event_type_hosts"),
    _fetch_event_types,
)
