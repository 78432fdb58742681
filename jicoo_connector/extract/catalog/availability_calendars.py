"""availability_calendars: each user's availability templates, flattened to one row per weekly
rule (one call per user)."""

from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa

from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.extract._fanout import bounded, merged
from jicoo_connector.extract.sources import ExtractContext, Fetched, Records, SnapshotSource
from jicoo_connector.tables import (
    UTC_MS,
    TableSpec,
    column,
    int_bool_column,
    json_column,
)

# The synthetic source key of a rule's position in its template.
_RULE_INDEX = "_ruleIndex"
# Availability rules are flattened next to their template; their keys get this prefix so that a
# rule field never shadows a template field of the same name.
_RULE_PREFIX = "rule."


def availability_rows(
    templates: Iterable[Mapping[str, object]],
) -> Iterator[Mapping[str, object]]:
    """One row per weekly rule per template; a template without rules keeps one row (no rule)."""
    for template in templates:
        head = {k: v for k, v in template.items() if k != "calendars"}
        rules = template.get("calendars")
        if not isinstance(rules, list) or not rules:
            if rules not in (None, []):
                head["calendars"] = rules  # not a list: unknown shape, lands in _extra
            yield {**head, _RULE_INDEX: None}
            continue
        for index, rule in enumerate(rules):
            flat = (
                {_RULE_PREFIX + k: v for k, v in rule.items()} if isinstance(rule, Mapping) else {}
            )
            yield {**head, **flat, _RULE_INDEX: index}


AVAILABILITY_CALENDARS_SPEC = TableSpec(
    "availability_calendars",
    (
        column(
            "calendar_uid",
            "uid",
            pa.string(),
            nullable=False,
            doc="The availability template's id.",
        ),
        column(
            "rule_index",
            _RULE_INDEX,
            pa.int32(),
            doc="The weekly rule's position in the template (null: a template without rules).",
        ),
        column("team_id", "teamId", pa.int64(), doc="The team the template belongs to."),
        column("user_id", "userId", pa.string(), doc="The user whose availability it is."),
        column("name", "name", pa.string(), doc="The template's name."),
        int_bool_column(
            "is_default", "isDefault", doc="Whether it is the user's default template."
        ),
        # The API spells it `timezone` here and `timeZone` everywhere else.
        column(
            "time_zone",
            "timezone",
            pa.string(),
            doc="The template's IANA zone (the API spells it timezone).",
        ),
        column("created_at", "createdAt", UTC_MS, doc="When the template was created (UTC)."),
        column("updated_at", "updatedAt", UTC_MS, doc="When the template last changed (UTC)."),
        column("wday", _RULE_PREFIX + "wday", pa.int8(), doc="The rule's weekday (0 = Sunday)."),
        column(
            "start_hour",
            _RULE_PREFIX + "startHour",
            pa.int8(),
            doc="The rule's start hour, in time_zone.",
        ),
        column(
            "start_minute", _RULE_PREFIX + "startMinute", pa.int8(), doc="The rule's start minute."
        ),
        column(
            "end_hour",
            _RULE_PREFIX + "endHour",
            pa.int8(),
            doc="The rule's end hour, in time_zone.",
        ),
        column("end_minute", _RULE_PREFIX + "endMinute", pa.int8(), doc="The rule's end minute."),
        column(
            "rule_started_at",
            _RULE_PREFIX + "startedAt",
            UTC_MS,
            doc="From when the rule applies (UTC).",
        ),
        column(
            "rule_ended_at",
            _RULE_PREFIX + "endedAt",
            UTC_MS,
            doc="Until when the rule applies (UTC).",
        ),
        column(
            "frequency_type",
            _RULE_PREFIX + "frequencyType",
            pa.int32(),
            doc="The rule's repetition kind.",
        ),
        column(
            "frequency_interval",
            _RULE_PREFIX + "frequencyInterval",
            pa.int32(),
            doc="Every how many periods the rule repeats.",
        ),
        json_column(
            "exceptions",
            _RULE_PREFIX + "exceptions",
            doc="The rule's exceptions, as the API's JSON (shape undocumented).",
        ),
    ),
    ("calendar_uid", "rule_index"),
    "snapshot",
    availability_rows,
    description="Each user's weekly availability templates, one row per rule, a snapshot per day.",
)


async def _fetch_availability(client: AsyncJicooClient, ctx: ExtractContext) -> Fetched:
    users = await client.list_organization_users()
    user_ids = [str(user["uid"]) for user in users.records if user.get("uid") is not None]
    listings = await bounded(ctx.fanout)(client.list_availability_calendars, user_ids)
    templates: Records = [record for listing in listings for record in listing.records]
    report = merged(users.report, *(listing.report for listing in listings))
    # to_record_batch flattens templates into one row per rule (TableSpec.rows); pass them raw.
    return Fetched(report, rows=templates)


AVAILABILITY_CALENDARS = SnapshotSource(
    AVAILABILITY_CALENDARS_SPEC,
    ("GET /v1/organization_users", "GET /v1/user_availability_calendars"),
    _fetch_availability,
)
