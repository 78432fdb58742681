"""PageRecords: answers read as records, converted to the table's schema once per listing; the
same batches as PageBatches (and the exact path) page by page, or the exact path's error."""

import datetime as dt

import orjson
import pyarrow as pa
import pytest

from jicoo_connector.errors import RecordConversionError
from jicoo_connector.extract import TABLES
from jicoo_connector.pages import PageBatches, PageRecords

EXTRACTED_AT = dt.datetime(2026, 11, 25, 3, 4, 5, 678000, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 25)
BOOKINGS = TABLES["bookings"].spec


def booking(uid: str, started_at: str = "2026-11-25T00:45:00.000Z") -> dict[str, object]:
    return {
        "uid": uid,
        "name": f"meeting {uid}",
        "status": "open",
        "startedAt": started_at,
        "endedAt": "2026-11-25T01:15:00Z",
        "hosts": [{"userId": "u1", "role": "admin"}],
        "updatedAt": "2026-11-21T01:02:03.004Z",
    }


def answer(records: list[dict[str, object]]) -> bytes:
    return orjson.dumps(
        {
            "data": records,
            "errors": {},
            "totalCount": len(records),
            "count": len(records),
            "currentPage": 1,
            "numberOfPages": 1,
        }
    )


def page_records() -> PageRecords:
    return PageRecords(BOOKINGS, extracted_at=EXTRACTED_AT, run_id="run-1", partition_value=DAY)


def test_records_of_many_pages_convert_to_what_each_page_converts_to() -> None:
    raws = [answer([booking(f"p{page}r{row}") for row in range(3)]) for page in range(4)]
    records = page_records()
    batches = PageBatches(BOOKINGS, extracted_at=EXTRACTED_AT, run_id="run-1", partition_value=DAY)
    decoded = [records.decode(raw) for raw in raws]
    assert all(d is not None and isinstance(d[1], pa.StructArray) for d in decoded)
    # A page that took the exact path stays a batch, in its place.
    exact = records.from_records(orjson.loads(raws[2])["data"])
    pages = [d[1] for d in decoded if d is not None]
    pages[2] = exact
    together = pa.Table.from_batches(records.batches(pages))
    one_by_one = [batches.decode(raw) for raw in raws]
    expected = pa.Table.from_batches([d[1] for d in one_by_one if d is not None])
    assert together.equals(expected)
    assert together.num_rows == 12


def test_a_time_the_cast_cannot_read_gets_the_exact_paths_error() -> None:
    records = page_records()
    good = records.decode(answer([booking("fine")]))
    bad = records.decode(answer([booking("zoneless", "2026-11-25T00:45:00")]))
    assert good is not None
    assert bad is not None  # read as text: nothing parsed yet
    with pytest.raises(RecordConversionError, match="zoneless"):
        records.batches([good[1], bad[1]])
