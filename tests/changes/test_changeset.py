"""Change-set parsing: every verdict located by row and column, hostile files refused whole."""

import csv
import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jicoo_connector.changes import Action, ParsedChangeSet, parse_changeset, write_rejected_csv
from jicoo_connector.changes._changeset import ALL_COLUMNS, escape_cell, parse_instant
from jicoo_connector.errors import ChangeSetError

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HEADER = "change_id,action,booking_uid,new_started_at,time_zone,cancel_reason"


def parse(text: str | bytes, **kwargs: object) -> ParsedChangeSet:
    data = text.encode() if isinstance(text, str) else text
    return parse_changeset(data, now=NOW, **kwargs)  # type: ignore[arg-type]


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def only_rejection(parsed: ParsedChangeSet) -> tuple[int, str | None, str]:
    assert parsed.changes == []
    assert len(parsed.rejected) == 1
    bad = parsed.rejected[0]
    return bad.row, bad.column, bad.reason


def test_valid_rows_become_changes_with_utc_targets() -> None:
    parsed = parse(
        csv_of(
            "c1,reschedule,bk1,2026-11-26T10:00:00+09:00,Asia/Tokyo,",
            ",cancel,bk2,,,guest asked",
            ",Reschedule,bk3,2026-11-26T10:00,America/New_York,",
        )
    )
    assert parsed.rejected == []
    first, second, third = parsed.changes
    assert (first.key, first.row, first.target) == ("c1", 2, "2026-11-26T01:00:00.000Z")
    assert second.action is Action.CANCEL
    assert second.cancel_reason == "guest asked"
    assert second.new_started_at is None
    assert len(second.key) == 64
    # Naive local time is read in the row's zone: 10:00 EST = 15:00 UTC.
    assert third.target == "2026-11-26T15:00:00.000Z"
    assert parsed.header == list(ALL_COLUMNS)


def test_keys_are_deterministic_and_distinguish_targets() -> None:
    rows = (",reschedule,bk1,2026-11-26T10:00Z,UTC,", ",reschedule,bk2,2026-11-26T10:00Z,UTC,")
    one = parse(csv_of(*rows))
    again = parse(csv_of(*rows))
    moved = parse(csv_of(",reschedule,bk1,2026-11-26T10:30Z,UTC,"))
    assert [c.key for c in one.changes] == [c.key for c in again.changes]
    assert one.changes[0].key != one.changes[1].key
    assert moved.changes[0].key != one.changes[0].key
    # Same instant written with another offset is the same change.
    same = parse(csv_of(",reschedule,bk1,2026-11-26T19:00+09:00,UTC,"))
    assert same.changes[0].key == one.changes[0].key


@pytest.mark.parametrize(
    ("row", "column", "reason_part"),
    [
        (",move,bk1,2026-11-26T10:00Z,UTC,", "action", "unknown action"),
        (",,bk1,2026-11-26T10:00Z,UTC,", "action", "unknown action"),
        (",reschedule,,2026-11-26T10:00Z,UTC,", "booking_uid", "required"),
        (",reschedule,=HYPERLINK(1),2026-11-26T10:00Z,UTC,", "booking_uid", "letters"),
        (",reschedule,bk1,26/11/2026 10:00,UTC,", "new_started_at", "ISO 8601"),
        (",reschedule,bk1,2026-11-26,UTC,", "new_started_at", "no time of day"),
        (",reschedule,bk1,2026-13-26T10:00Z,UTC,", "new_started_at", "ISO 8601"),
        (",reschedule,bk1,,UTC,", "new_started_at", "required"),
        (",reschedule,bk1,2026-11-26T10:00Z,Mars/Olympus,", "time_zone", "unknown IANA"),
        (",reschedule,bk1,2026-11-26T10:00Z,../../etc/passwd,", "time_zone", "unknown IANA"),
        (",reschedule,bk1,2026-11-26T10:00,,", "time_zone", "required when new_started_at"),
        (",reschedule,bk1,2026-10-01T10:00Z,UTC,", "new_started_at", "in the past"),
        (",reschedule,bk1,2099-10-01T10:00Z,UTC,", "new_started_at", "days ahead"),
        (",reschedule,bk1,2027-03-14T02:30,America/New_York,", "new_started_at", "does not exist"),
        (",reschedule,bk1,2027-11-07T01:30,America/New_York,", "new_started_at", "ambiguous"),
        (",reschedule,bk1,2026-11-26T10:00Z,UTC,why", "cancel_reason", "only allowed"),
        (",cancel,bk1,2026-11-26T10:00Z,UTC,", "new_started_at", "takes no"),
        (",cancel,bk1,,,=cmd|' /C calc'!A0", "cancel_reason", "formula"),
        (",cancel,bk1,,Nowhere/Zone,", "time_zone", "unknown IANA"),
        ("-bad,cancel,bk1,,,", "change_id", "must start"),
        (",cancel,bk1,,", None, "fields"),
    ],
)
def test_each_rejection_is_located(row: str, column: str | None, reason_part: str) -> None:
    line, col, reason = only_rejection(parse(csv_of(",cancel,ok1,,,", row)[0:0] + csv_of(row)))
    assert line == 2
    assert col == column
    assert reason_part in reason


def test_rejected_rows_do_not_stop_good_rows_and_keep_file_lines() -> None:
    parsed = parse(
        csv_of(
            ",cancel,good1,,,",
            "",  # blank line: skipped, but still counted as a file line
            ",nope,bad1,,,",
            ',cancel,good2,,,"multi',
            'line reason"',
            ",cancel,bad2,,Bad/Zone,",
        )
    )
    assert [c.booking_uid for c in parsed.changes] == ["good1"]
    assert [(r.row, r.column) for r in parsed.rejected] == [
        (4, "action"),
        (5, "cancel_reason"),
        (7, "time_zone"),
    ]


def test_two_rows_for_one_booking_are_rejected_together() -> None:
    parsed = parse(
        csv_of(
            ",reschedule,bk1,2026-11-26T10:00Z,UTC,",
            ",cancel,other,,,",
            ",cancel,bk1,,,",
        )
    )
    assert [c.booking_uid for c in parsed.changes] == ["other"]
    assert [(r.row, r.column) for r in parsed.rejected] == [(2, "booking_uid"), (4, "booking_uid")]
    assert "row 4" in parsed.rejected[0].reason


def test_duplicate_booking_rejects_the_good_row_next_to_a_bad_one() -> None:
    parsed = parse(csv_of(",reschedule,bk1,not-a-date,UTC,", ",cancel,bk1,,,"))
    assert parsed.changes == []
    assert [(r.row, r.column) for r in parsed.rejected] == [
        (2, "new_started_at"),
        (3, "booking_uid"),
    ]


def test_duplicate_change_id_rejects_both() -> None:
    parsed = parse(csv_of("same,cancel,bk1,,,", "same,cancel,bk2,,,", "other,cancel,bk3,,,"))
    assert [c.key for c in parsed.changes] == ["other"]
    assert [(r.row, r.column) for r in parsed.rejected] == [(2, "change_id"), (3, "change_id")]


def test_strict_turns_a_bad_row_into_a_file_error() -> None:
    with pytest.raises(ChangeSetError) as info:
        parse(csv_of(",cancel,bk1,,,", ",nope,bk2,,,"), strict=True)
    assert (info.value.row, info.value.column) == (3, "action")
    assert parse(csv_of(",cancel,bk1,,,"), strict=True).changes


def test_optional_columns_may_be_absent_and_order_is_free() -> None:
    parsed = parse(
        "time_zone,booking_uid,new_started_at,action\nUTC,bk1,2026-11-26T10:00Z,reschedule\n"
    )
    assert parsed.changes[0].change_id is None
    assert parsed.changes[0].target == "2026-11-26T10:00:00.000Z"


def test_bom_and_crlf_are_fine() -> None:
    data = b"\xef\xbb\xbf" + csv_of(",cancel,bk1,,,").replace("\n", "\r\n").encode()
    parsed = parse(data)
    assert [c.booking_uid for c in parsed.changes] == ["bk1"]
    assert parsed.header[0] == "change_id"


def test_cp932_is_diagnosed_and_then_accepted() -> None:
    data = csv_of(",cancel,bk1,,,体調不良のため").encode("cp932")
    with pytest.raises(ChangeSetError, match="--encoding cp932") as info:
        parse(data)
    assert info.value.row == 2
    parsed = parse(data, encoding="cp932")
    assert parsed.changes[0].cancel_reason == "体調不良のため"


def _hostile_files() -> list[tuple[str, bytes, int | None, str | None, str]]:
    good = csv_of(",cancel,bk1,,,")
    huge_rows = "\n".join(f",cancel,bk{i},,," for i in range(11))
    return [
        ("empty", b"", 1, None, "empty"),
        ("whitespace only", b"  \n\n", 1, None, "empty"),
        ("header only", HEADER.encode() + b"\n", 2, None, "no data rows"),
        ("header only with blank rows", (HEADER + "\n,,,,,\n\n").encode(), 2, None, "no data"),
        ("NUL in a cell", csv_of(",cancel,bk\x001,,,").encode(), 2, None, "NUL"),
        ("UTF-16 with BOM", good.encode("utf-16"), 1, None, "NUL"),
        ("UTF-16 without NUL", "\ufeff".encode("utf-16-le")[:2] + b"ab", 1, None, "UTF-16"),
        ("binary garbage", bytes(range(256)) * 4, 1, None, ""),
        ("PNG header", b"\x89PNG\r\n\x1a\n" + b"\xff" * 20, 1, None, "neither"),
        ("control char", csv_of(",cancel,bk\x071,,,").encode(), 2, None, "control"),
        ("CP932", csv_of(",cancel,bk1,,,予約変更").encode("cp932"), 2, None, "cp932"),
        ("missing column", b"action,booking_uid,time_zone\ncancel,bk1,\n", 1, "new_started_at", ""),
        ("unknown column", (HEADER + ",note\n,cancel,bk1,,,,x\n").encode(), 1, "note", "unknown"),
        ("typo column", good.replace("cancel_reason", "cancel_reson").encode(), 1, None, ""),
        ("duplicate column", b"action,action,booking_uid,new_started_at,time_zone\n", 1, None, ""),
        ("header is data", b",cancel,bk1,,,\n", 1, None, "unknown column"),
        ("blank header", b",,,,\n,cancel,bk1,,\n", 1, None, "header"),
        ("too many rows", csv_of(huge_rows).encode(), 12, None, "more than 10"),
        ("over size", csv_of(",cancel,bk1,,," + " " * 5000).encode(), None, None, "larger"),
        ("unterminated quote", csv_of(',cancel,bk1,,,"open').encode(), None, None, "malformed"),
        ("bad explicit encoding", good.encode(), None, None, "unknown encoding"),
        ("latin-1", csv_of(",cancel,bk1,,,caf\xe9").encode("latin-1"), 2, None, ""),
        ("lone surrogate bytes", csv_of(",cancel,bk1,,,").encode() + b"\xed\xa0\x80", 3, None, ""),
        ("html page", b"<html>\x00</html>", 1, None, "NUL"),
        ("zip file", b"PK\x03\x04\x14\x00\x00\x00", 1, None, "NUL"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "row", "column", "reason_part"),
    _hostile_files(),
    ids=[case[0] for case in _hostile_files()],
)
def test_hostile_files_are_refused_whole_with_a_location(
    name: str, data: bytes, row: int | None, column: str | None, reason_part: str
) -> None:
    kwargs: dict[str, object] = {"max_rows": 10, "max_bytes": 4096}
    if name == "bad explicit encoding":
        kwargs["encoding"] = "no-such-codec"
    with pytest.raises(ChangeSetError) as info:
        parse(data, **kwargs)
    if row is not None:
        assert info.value.row == row
    if column is not None:
        assert info.value.column == column
    assert reason_part in str(info.value)


def test_hostile_rows_each_give_a_located_rejection_and_no_change() -> None:
    rows = [
        ",cancel,bk1,,,+SUM(A1:A9)",
        ",cancel,bk2,,,@SUM(A1)",
        ",cancel,bk3,,,-2+3",
        ',cancel,bk4,,," =1+1"',
        ",reschedule,bk5,2027-03-14T02:30,America/New_York,",
        ",reschedule,bk6,2027-11-07T01:30,America/New_York,",
        ",reschedule,bk7,9999-12-31T23:59:59,Pacific/Kiritimati,",
        ",reschedule,bk8,0001-01-01T00:00,Etc/GMT+12,",
        ",reschedule,bk9,2026-11-26T10:00Z,utc/../UTC,",
        ",reschedule," + "x" * 65 + ",2026-11-26T10:00Z,UTC,",
        ",cancel,bk10,,," + "y" * 1001,
        ",reschedule,bk11,2026-11-26T10:00:00+25:00,UTC,",
    ]
    parsed = parse(csv_of(*rows))
    assert parsed.changes == []
    assert [r.row for r in parsed.rejected] == list(range(2, 2 + len(rows)))
    assert all(r.column is not None for r in parsed.rejected)


def test_path_input_and_size_cap_read_no_more_than_needed(tmp_path: Path) -> None:
    path = tmp_path / "changes.csv"
    path.write_text(csv_of(",cancel,bk1,,,"), encoding="utf-8")
    assert parse_changeset(path, now=NOW).changes[0].booking_uid == "bk1"
    with pytest.raises(ChangeSetError, match="larger"):
        parse_changeset(path, now=NOW, max_bytes=10)
    with pytest.raises(ChangeSetError, match="cannot read"):
        parse_changeset(tmp_path / "missing.csv", now=NOW)


def test_content_hash_follows_the_bytes() -> None:
    one = parse(csv_of(",cancel,bk1,,,"))
    two = parse(csv_of(",cancel,bk1,,,") + "\n")
    assert one.content_hash != two.content_hash
    assert one.content_hash == parse(csv_of(",cancel,bk1,,,")).content_hash


def test_write_rejected_csv_escapes_formulas(tmp_path: Path) -> None:
    parsed = parse(
        csv_of(
            "=1+1,cancel,bk1,,,",
            ",@attack,bk2,,,",
            ",cancel,bk3,,Bad/Zone,-oops",
            ",cancel,fine,,,",
        )
    )
    out = tmp_path / "rejected.csv"
    assert write_rejected_csv(out, parsed) == 3
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [*ALL_COLUMNS, "error_row", "error_column", "error_reason"]
    assert rows[1][0] == "'=1+1"
    assert rows[1][6:8] == ["2", "change_id"]
    assert rows[2][1] == "'@attack"
    assert rows[3][5] == "'-oops"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert escape_cell("\rx") == "'\rx"
    assert escape_cell("plain") == "plain"


# -- properties -------------------------------------------------------------------------------

ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})
FUTURE = st.datetimes(
    min_value=dt.datetime(2026, 11, 2),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=dt.datetime(2028, 10, 1),  # noqa: DTZ001
    timezones=st.none(),
)


@settings(max_examples=300, deadline=None)
@given(moment=FUTURE, zone=st.sampled_from(ZONES))
def test_naive_local_times_round_trip_or_are_rejected(moment: dt.datetime, zone: str) -> None:
    moment = moment.replace(microsecond=0)
    parsed = parse(csv_of(f",reschedule,bk1,{moment.isoformat()},{zone},"))
    tz = zoneinfo.ZoneInfo(zone)
    early, late = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
    if early.utcoffset() == late.utcoffset():
        (change,) = parsed.changes
        assert change.new_started_at is not None
        assert change.new_started_at.astimezone(tz).replace(tzinfo=None) == moment
        assert change.time_zone == zone
    else:
        row, column, reason = only_rejection(parsed)
        assert (row, column) == (2, "new_started_at")
        assert "does not exist" in reason or "ambiguous" in reason


@settings(max_examples=300, deadline=None)
@given(
    moment=FUTURE,
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    zone=st.sampled_from(ZONES),
)
def test_explicit_offsets_give_the_same_instant(
    moment: dt.datetime, offset_minutes: int, zone: str
) -> None:
    stamp = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))
    parsed = parse(csv_of(f",reschedule,bk1,{stamp.isoformat()},{zone},"))
    (change,) = parsed.changes
    assert change.new_started_at == stamp
    assert change.target is not None
    assert change.target.endswith("Z")


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(st.text(max_size=30), min_size=6, max_size=6))
def test_any_row_gets_exactly_one_verdict(cells: list[str]) -> None:
    line = ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)
    try:
        parsed = parse(csv_of(line))
    except ChangeSetError as exc:
        located = exc.row is not None
    else:
        located = True
        assert len(parsed.changes) + len(parsed.rejected) <= 1
        for bad in parsed.rejected:
            assert bad.row == 2
            assert bad.reason
    # Only whole-file problems may escape, and they are located.
    assert located


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parsed = parse(data)
    except ChangeSetError:
        return
    assert parsed.header


def test_an_offset_makes_time_zone_optional() -> None:
    (change,) = parse(csv_of(",reschedule,bk1,2026-11-26T10:00+09:00,,")).changes
    assert change.new_started_at == dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC)
    assert change.time_zone is None  # the apply keeps the booking's own zone


def test_parse_instant_is_lenient_but_wants_an_offset() -> None:
    assert parse_instant("2026-11-26T01:00:00.000Z") == dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC)
    assert parse_instant("2026-11-26T10:00:00+09:00") == dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC)
    assert parse_instant("2026-11-26T01:00:00") is None
    assert parse_instant(None) is None
    assert parse_instant("soon") is None
