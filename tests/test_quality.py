"""The data-quality rules behind the asset checks, on small hand-made tables."""

import datetime as dt

import pyarrow as pa

from jicoo_connector.quality import (
    Severity,
    contacts_reference_bookings,
    ended_after_started,
    extra_empty,
    key_unique_not_null,
    rows_match_total,
)

T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def test_unique_key_passes_and_duplicates_or_nulls_fail() -> None:
    assert key_unique_not_null(pa.table({"uid": ["a", "b"]}), ["uid"]).passed
    duplicated = key_unique_not_null(pa.table({"uid": ["a", "b", "a"]}), ["uid"])
    assert not duplicated.passed
    assert duplicated.metadata["duplicated_keys"] == 1
    with_null = key_unique_not_null(pa.table({"uid": ["a", None]}), ["uid"])
    assert not with_null.passed
    assert with_null.metadata["null_keys"] == 1


def test_compound_key_is_unique_per_combination() -> None:
    table = pa.table({"booking_uid": ["a", "a", "b"], "contact_index": [0, 1, 0]})
    assert key_unique_not_null(table, ["booking_uid", "contact_index"]).passed
    clash = pa.table({"booking_uid": ["a", "a"], "contact_index": [0, 0]})
    assert not key_unique_not_null(clash, ["booking_uid", "contact_index"]).passed


def test_ended_after_started_names_the_bad_rows() -> None:
    good = pa.table({"uid": ["a"], "started_at": [T0], "ended_at": [T0 + HOUR]})
    assert ended_after_started(good).passed
    bad = pa.table(
        {"uid": ["a", "b", "c"], "started_at": [T0, T0, T0], "ended_at": [T0 + HOUR, T0, None]}
    )
    result = ended_after_started(bad)
    assert not result.passed
    assert result.metadata["bad_rows"] == 2
    assert result.metadata["sample"] == "b, c"


def test_contacts_must_reference_known_bookings() -> None:
    contacts = pa.table({"booking_uid": ["a", "b", "zz"]})
    assert contacts_reference_bookings(contacts, {"a", "b", "zz"}).passed
    result = contacts_reference_bookings(contacts, {"a", "b"})
    assert not result.passed
    assert result.metadata["sample"] == "zz"


def test_extra_is_a_warning_not_an_error() -> None:
    assert extra_empty(pa.table({"_extra": pa.array([None, None], pa.string())})).passed
    result = extra_empty(pa.table({"_extra": ['{"newField": 1}', None]}))
    assert not result.passed
    assert result.severity is Severity.WARN


def test_rows_match_total() -> None:
    assert rows_match_total(5, 5).passed
    assert not rows_match_total(4, 5).passed
    assert rows_match_total(4, None).passed
