"""Arrow schemas and the records -> RecordBatch conversion, on hand-made API records."""

import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jicoo_connector.changes import APPLY_LOG
from jicoo_connector.errors import JicooError
from jicoo_connector.extract import TABLES
from jicoo_connector.extract.catalog import BUILT_IN
from jicoo_connector.extract.catalog.available_slots import slot_rows
from jicoo_connector.extract.catalog.booking_contacts import contact_rows
from jicoo_connector.extract.catalog.event_types import event_type_rows
from jicoo_connector.tables import (
    UTC_MS,
    RecordConversionError,
    to_record_batch,
)

EXTRACTED_AT = dt.datetime(2024, 3, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
DAY = dt.date(2024, 3, 1)
SNAKE = re.compile(r"^_?[a-z][a-z0-9]*(_[a-z0-9]+)*$")
BOOKINGS = TABLES["bookings"].spec
BOOKING_CONTACTS = TABLES["booking_contacts"].spec

BOOKING: dict[str, object] = {
    "uid": "mzgdPJVBb7RE",
    "eventTypeId": "et_1",
    "name": "Intro call",
    "description": None,
    "status": "open",
    "startedAt": "2024-03-01T15:30:00.000Z",
    "endedAt": "2024-03-01T16:00:00.000Z",
    "locationId": "zoom",
    "url": "https://zoom.example/j/1",
    "phoneNumber": None,
    "address": None,
    "customLocation": None,
    "access": None,
    "timeZone": "Asia/Tokyo",
    "priority": "high",
    "cancelReason": None,
    "cancelledAt": None,
    "cancelledBy": None,
    "capacity": 2,
    "hosts": [
        {"userId": "cfmSbUHeizSoZob9cRA3N8fmfKg1", "role": "admin"},
        {"userId": "u2", "role": "viewer"},
    ],
    "createdAt": "2024-02-20T01:02:03.004Z",
    "updatedAt": "2024-02-21T01:02:03Z",
}

CONTACT: dict[str, object] = {
    "name": "Guest",
    "email": "guest@example.com",
    "ccEmails": ["a@example.com", "b@example.com"],
    "company": None,
    "phoneNumber": "+81-3-0000",
    "message": "hello",
    "textRemindNumber": None,
    "textRemindCountryCode": None,
    "answers": [{"question": "Why?", "content": ["x", "y"]}, {"question": "Q2", "content": []}],
    "createdAt": "2024-02-20T01:02:03.004Z",
    "updatedAt": "2024-02-20T01:02:03.004Z",
}


def _batch(
    table: str, records: Sequence[Mapping[str, object]], run_id: str | None = "run-1"
) -> pa.RecordBatch:
    return to_record_batch(
        TABLES[table].spec, records, extracted_at=EXTRACTED_AT, run_id=run_id, partition_value=DAY
    )


def _roundtrip(batch: pa.RecordBatch) -> pa.Table:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_batches([batch]), sink)
    sink.seek(0)
    return pq.read_table(sink)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_schema_is_snake_case_with_lineage_partition_and_keys(name: str) -> None:
    spec = TABLES[name].spec
    schema = spec.schema
    assert all(SNAKE.match(field.name) for field in schema), schema.names
    assert schema.field("_extra").type == pa.string()
    assert schema.field("_extracted_at").type == UTC_MS
    assert not schema.field("_extracted_at").nullable
    assert schema.field("_run_id").type == pa.string()
    expected_partition = "day" if spec.partitioning == "day" else "snapshot_date"
    assert spec.partition_column == expected_partition
    assert schema.field(expected_partition).type == pa.date32()
    for key in spec.key_columns:
        assert key in schema.names
    # Every timestamp is UTC at millisecond precision.
    for field in schema:
        if pa.types.is_timestamp(field.type):
            assert field.type == UTC_MS, field.name
    # An empty batch has exactly the declared schema.
    assert _batch(name, []).schema == schema


def test_the_registry_holds_the_catalog_first_each_table_once_under_its_own_name() -> None:
    assert list(TABLES)[: len(BUILT_IN)] == [source.table for source in BUILT_IN]
    for source in BUILT_IN:
        assert TABLES[source.table] is source
    for name, source in TABLES.items():
        assert source.spec.name == source.table == name
    assert BOOKINGS.key_columns == ("uid",)
    assert BOOKING_CONTACTS.key_columns == ("booking_uid", "contact_index")


def test_the_apply_log_is_declared_as_a_table_without_the_extracts_lineage() -> None:
    assert APPLY_LOG.partitioning == "batch"
    assert not APPLY_LOG.extracted
    assert APPLY_LOG.schema.names == [column.name for column in APPLY_LOG.columns]
    assert all(SNAKE.match(name) for name in APPLY_LOG.schema.names)
    assert set(APPLY_LOG.key_columns) <= set(APPLY_LOG.schema.names)
    assert APPLY_LOG.name not in TABLES  # written by write-back, never extracted
    with pytest.raises(ValueError, match="write-back"):
        to_record_batch(APPLY_LOG, [], extracted_at=EXTRACTED_AT, run_id=None, partition_value=DAY)


def test_booking_fields_map_camel_case_to_snake_case() -> None:
    row = _batch("bookings", [BOOKING]).to_pylist()[0]
    assert row == {
        "uid": "mzgdPJVBb7RE",
        "event_type_id": "et_1",
        "name": "Intro call",
        "description": None,
        "status": "open",
        "started_at": dt.datetime(2024, 3, 1, 15, 30, tzinfo=dt.UTC),
        "ended_at": dt.datetime(2024, 3, 1, 16, 0, tzinfo=dt.UTC),
        "location_id": "zoom",
        "url": "https://zoom.example/j/1",
        "phone_number": None,
        "address": None,
        "custom_location": None,
        "access": None,
        "time_zone": "Asia/Tokyo",
        "priority": "high",
        "cancel_reason": None,
        "cancelled_at": None,
        "cancelled_by": None,
        "capacity": 2,
        "hosts": [
            {"user_id": "cfmSbUHeizSoZob9cRA3N8fmfKg1", "role": "admin"},
            {"user_id": "u2", "role": "viewer"},
        ],
        "created_at": dt.datetime(2024, 2, 20, 1, 2, 3, 4000, tzinfo=dt.UTC),
        "updated_at": dt.datetime(2024, 2, 21, 1, 2, 3, tzinfo=dt.UTC),
        "day": DAY,
        "_extra": None,
        "_extracted_at": EXTRACTED_AT,
        "_run_id": "run-1",
    }


def test_unknown_fields_land_in_extra_and_are_never_dropped() -> None:
    record = {**BOOKING, "newField": {"a": [1, 2]}, "anotherOne": "x"}
    extra = _batch("bookings", [record, BOOKING]).column("_extra").to_pylist()
    assert orjson.loads(str(extra[0])) == {"newField": {"a": [1, 2]}, "anotherOne": "x"}
    assert extra[1] is None


def test_unknown_field_inside_a_nested_item_keeps_the_whole_list_in_extra() -> None:
    hosts = [{"userId": "u1", "role": "admin", "weight": 3}]
    batch = _batch("bookings", [{**BOOKING, "hosts": hosts}])
    assert batch.column("hosts").to_pylist() == [[{"user_id": "u1", "role": "admin"}]]
    assert orjson.loads(str(batch.column("_extra")[0].as_py())) == {"hosts": hosts}


def test_nested_lists_survive_a_parquet_round_trip() -> None:
    contacts = list(contact_rows("b1", [CONTACT, {**CONTACT, "ccEmails": [], "answers": None}]))
    table = _roundtrip(_batch("booking_contacts", contacts))
    assert table.schema == BOOKING_CONTACTS.schema
    assert table.column("cc_emails").to_pylist() == [["a@example.com", "b@example.com"], []]
    assert table.column("answers").to_pylist() == [
        [{"question": "Why?", "content": ["x", "y"]}, {"question": "Q2", "content": []}],
        None,
    ]
    bookings = _roundtrip(_batch("bookings", [BOOKING, {**BOOKING, "uid": "b2", "hosts": []}]))
    assert bookings.column("hosts").to_pylist() == [
        [
            {"user_id": "cfmSbUHeizSoZob9cRA3N8fmfKg1", "role": "admin"},
            {"user_id": "u2", "role": "viewer"},
        ],
        [],
    ]


def test_contacts_carry_booking_uid_and_a_stable_index() -> None:
    batch = _batch("booking_contacts", list(contact_rows("bk", [CONTACT, CONTACT, CONTACT])))
    assert batch.column("booking_uid").to_pylist() == ["bk"] * 3
    assert batch.column("contact_index").to_pylist() == [0, 1, 2]
    assert batch.column("_extra").to_pylist() == [None] * 3  # synthetic keys are not "unknown"


CALENDAR_TEMPLATE: dict[str, object] = {
    "uid": "cal1",
    "teamId": 39,
    "userId": "u1",
    "name": "Weekdays",
    "isDefault": 1,
    "timezone": "Asia/Tokyo",
    "createdAt": "2024-01-01T00:00:00.000Z",
    "updatedAt": "2024-01-02T00:00:00.000Z",
    "calendars": [
        {
            "wday": 1,
            "startHour": 9,
            "startMinute": 0,
            "endHour": 17,
            "endMinute": 30,
            "startedAt": "2024-01-01T00:00:00.000Z",
            "endedAt": None,
            "frequencyType": 2,
            "frequencyInterval": 1,
            "exceptions": [{"date": "2024-01-08"}],
        },
        {
            "wday": 2,
            "startHour": 10,
            "startMinute": 15,
            "endHour": 24,
            "endMinute": 0,
            "startedAt": "2024-01-01T00:00:00Z",
            "endedAt": "2024-06-01T00:00:00Z",
            "frequencyType": 2,
            "frequencyInterval": 1,
            "exceptions": None,
            "color": "red",
        },
    ],
}


def test_availability_is_one_row_per_rule_with_template_fields() -> None:
    template = CALENDAR_TEMPLATE
    empty = {**template, "uid": "cal2", "isDefault": 0, "calendars": []}
    rows = _batch("availability_calendars", [template, empty]).to_pylist()
    assert [(r["calendar_uid"], r["rule_index"]) for r in rows] == [
        ("cal1", 0),
        ("cal1", 1),
        ("cal2", None),
    ]
    first, second, third = rows
    assert (first["team_id"], first["user_id"], first["time_zone"], first["is_default"]) == (
        39,
        "u1",
        "Asia/Tokyo",
        True,
    )
    assert (first["wday"], first["start_hour"], first["end_hour"], first["end_minute"]) == (
        1,
        9,
        17,
        30,
    )
    assert orjson.loads(first["exceptions"]) == [{"date": "2024-01-08"}]
    assert second["rule_ended_at"] == dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    assert second["start_minute"] == 15
    assert orjson.loads(second["_extra"]) == {"rule.color": "red"}
    assert first["_extra"] is None
    assert third["is_default"] is False
    assert third["wday"] is None


def test_is_default_other_than_zero_or_one_is_refused() -> None:
    with pytest.raises(RecordConversionError, match="is_default"):
        _batch("availability_calendars", [{"uid": "c", "isDefault": 2, "calendars": []}])


def test_slots_and_event_types_with_hosts() -> None:
    slots = _batch(
        "available_slots",
        list(slot_rows("et1", [{"startedAt": "2024-03-01T00:00:00.000Z", "remainingCapacity": 1}])),
    )
    assert slots.to_pylist()[0]["event_type_uid"] == "et1"
    assert slots.to_pylist()[0]["remaining_capacity"] == 1
    host = {
        "uid": "u1",
        "name": "H",
        "email": "h@example.com",
        "profileImage": None,
        "role": "admin",
        "priority": 2,
        "userType": "notifyHost",
        "sort": 0,
    }
    event_type = {"uid": "et1", "name": "Call", "status": "enable", "duration": 30}
    batch = _batch(
        "event_types", [event_type_rows(event_type, [host]), event_type_rows(event_type, None)]
    )
    assert batch.column("hosts").to_pylist() == [
        [
            {
                "uid": "u1",
                "name": "H",
                "email": "h@example.com",
                "profile_image": None,
                "role": "admin",
                "priority": 2,
                "user_type": "notifyHost",
                "sort": 0,
            }
        ],
        None,
    ]
    assert batch.column("duration_minutes").to_pylist() == [30, 30]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T20:00:00.000Z", dt.datetime(2024, 3, 1, 20, tzinfo=dt.UTC)),
        ("2024-03-01T20:00:00Z", dt.datetime(2024, 3, 1, 20, tzinfo=dt.UTC)),
        ("2024-03-02T05:00:00.250+09:00", dt.datetime(2024, 3, 1, 20, 0, 0, 250000, tzinfo=dt.UTC)),
        ("2024-03-01T20:00:00.123456Z", dt.datetime(2024, 3, 1, 20, 0, 0, 123000, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_are_parsed_to_utc_milliseconds(text: str, expected: dt.datetime) -> None:
    column = _batch("bookings", [{**BOOKING, "startedAt": text}]).column("started_at")
    assert column.type == UTC_MS
    assert column[0].as_py() == expected


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    st.booleans(),
)
def test_any_api_timestamp_round_trips(moment: dt.datetime, with_millis: bool) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000 if with_millis else 0)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond // 1000:03d}Z" if with_millis else "Z"
    )
    assert (
        _batch("bookings", [{**BOOKING, "startedAt": text}]).column("started_at")[0].as_py()
        == moment
    )


@pytest.mark.parametrize("bad", ["2024-13-01T00:00:00Z", "yesterday", "2024-03-01T20:00:00", 17])
def test_a_bad_timestamp_names_table_column_and_record(bad: object) -> None:
    records = [BOOKING, {**BOOKING, "uid": "bad-one", "endedAt": bad}]
    with pytest.raises(RecordConversionError) as caught:
        _batch("bookings", records)
    error = caught.value
    assert isinstance(error, JicooError)
    assert (error.table, error.column) == ("bookings", "ended_at")
    assert "uid='bad-one'" in str(error)
    assert str(error).startswith("bookings.ended_at:")


def test_wrong_types_are_refused_not_coerced() -> None:
    with pytest.raises(RecordConversionError, match=r"bookings\.capacity.*uid='x'"):
        _batch("bookings", [{**BOOKING, "uid": "x", "capacity": 1.5}])
    with pytest.raises(RecordConversionError, match=r"bookings\.name.*uid='y'") as caught:
        _batch("bookings", [BOOKING, {**BOOKING, "uid": "y", "name": 12}])
    # Text columns may hold personal data: the message names the type, not the value.
    assert "of type int" in str(caught.value)
    with pytest.raises(
        RecordConversionError, match=r"booking_contacts\.cc_emails.*booking_uid='b'"
    ):
        _batch("booking_contacts", list(contact_rows("b", [{**CONTACT, "ccEmails": "a@b.c"}])))


def test_a_missing_key_or_start_is_refused() -> None:
    with pytest.raises(RecordConversionError, match=r"bookings\.uid: missing value"):
        _batch("bookings", [{k: v for k, v in BOOKING.items() if k != "uid"}])
    with pytest.raises(
        RecordConversionError, match=r"bookings\.started_at: missing value.*uid='z'"
    ):
        _batch("bookings", [BOOKING, {**BOOKING, "uid": "z", "startedAt": None}])


def test_naive_extracted_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_record_batch(
            TABLES["users"].spec,
            [],
            extracted_at=dt.datetime(2024, 1, 1),  # noqa: DTZ001 - naive on purpose
            run_id=None,
            partition_value=DAY,
        )


def test_run_id_is_nullable_and_lineage_is_constant() -> None:
    batch = _batch("users", [{"uid": "u1"}, {"uid": "u2"}], run_id=None)
    assert batch.column("_run_id").to_pylist() == [None, None]
    assert batch.column("_extracted_at").to_pylist() == [EXTRACTED_AT, EXTRACTED_AT]
    assert batch.column("snapshot_date").to_pylist() == [DAY, DAY]


def test_every_column_of_every_table_is_described() -> None:
    for spec in [*(source.spec for source in TABLES.values()), APPLY_LOG]:
        described = spec.column_descriptions()
        assert list(described) == spec.schema.names, spec.name
        assert all(text.strip() for text in described.values()), spec.name
