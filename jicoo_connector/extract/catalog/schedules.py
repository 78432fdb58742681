"""schedules: the organization's calendar entries, one listing a day."""

import pyarrow as pa

from jicoo_connector.extract.sources import SnapshotSource, listing
from jicoo_connector.tables import UTC_MS, TableSpec, column, json_column, struct_list_column

_ATTENDEE: list[tuple[str, str, pa.DataType]] = [
    ("user_id", "userId", pa.string()),
    ("email", "email", pa.string()),
    ("role", "role", pa.string()),
    ("user_type", "userType", pa.string()),
]

SCHEDULES_SPEC = TableSpec(
    "schedules",
    (
        column("uid", "uid", pa.string(), nullable=False, doc="The schedule's id."),
        column("name", "name", pa.string(), doc="The schedule's title."),
        column("description", "description", pa.string(), doc="The schedule's description."),
        json_column(
            "routine", "routine", doc="The recurrence rule, as the API's JSON (shape undocumented)."
        ),
        column("is_remind", "isRemind", pa.bool_(), doc="Whether reminders are sent."),
        column("project_id", "projectId", pa.int64(), doc="The project the schedule belongs to."),
        column(
            "phone_number",
            "phoneNumber",
            pa.string(),
            doc="The phone number of a phone meeting, if any.",
        ),
        column("access", "access", pa.string(), doc="How the location is reached."),
        column(
            "address", "address", pa.string(), doc="The address of an in-person meeting, if any."
        ),
        column(
            "custom_location", "customLocation", pa.string(), doc="A location typed by the user."
        ),
        struct_list_column(
            "attendees",
            "attendees",
            _ATTENDEE,
            doc="The attendees: user_id, email, role and user_type of each.",
        ),
        column("is_all_day", "isAllDay", pa.bool_(), doc="Whether it lasts the whole day."),
        column("time_zone", "timeZone", pa.string(), doc="The IANA zone of the schedule."),
        column("started_at", "startedAt", UTC_MS, doc="Start (UTC)."),
        column("ended_at", "endedAt", UTC_MS, doc="End (UTC)."),
        column("priority", "priority", pa.string(), doc="The schedule's priority."),
        column("display_type", "displayType", pa.string(), doc="How the calendar shows it."),
        column("location", "location", pa.string(), doc="The location as text."),
        column(
            "transparency",
            "transparency",
            pa.string(),
            doc="Whether it blocks time (busy) or not (free).",
        ),
        column("behavior", "behavior", pa.string(), doc="The API's behavior field."),
        column("visibility_type", "visibilityType", pa.string(), doc="Who may see it."),
        column("status", "status", pa.string(), doc="The schedule's status."),
        column("url", "url", pa.string(), doc="The online meeting URL, if any."),
        column("created_at", "createdAt", UTC_MS, doc="When it was created (UTC)."),
        column("updated_at", "updatedAt", UTC_MS, doc="When it last changed (UTC)."),
    ),
    ("uid",),
    "snapshot",
    checks=("ended_after_started",),
    description="Jicoo schedules (calendar entries), a snapshot per day.",
)

SCHEDULES = SnapshotSource(
    SCHEDULES_SPEC, ("GET /v1/schedules",), listing(lambda client: client.list_schedules())
)
