"""List answers straight to Arrow (pages.PageBatches) and through the client's decoded listing:
the fast reader either agrees with to_record_batch value for value or steps aside."""

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jicoo_connector.client import AsyncJicooClient
from jicoo_connector.errors import ProtocolError, RecordConversionError
from jicoo_connector.extract import TABLES
from jicoo_connector.pages import PageBatches
from jicoo_connector.tables import UTC_MS, constant_array, to_record_batch
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import sandbox_settings

EXTRACTED_AT = dt.datetime(2026, 11, 25, 3, 4, 5, 678000, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 25)
BOOKINGS = TABLES["bookings"].spec

BOOKING: dict[str, object] = {
    "uid": "mzgdPJVBb7RE",
    "eventTypeId": "et_1",
    "name": "採用面接 - 中村様",
    "description": None,
    "status": "open",
    "startedAt": "2026-11-25T00:45:00.000Z",
    "endedAt": "2026-11-25T01:15:00.000Z",
    "locationId": "zoom",
    "timeZone": "Asia/Tokyo",
    "capacity": 2,
    "hosts": [{"userId": "u1", "role": "admin"}, {"userId": "u2", "role": "viewer"}],
    "createdAt": "2026-11-20T01:02:03.004Z",
    "updatedAt": "2026-11-21T01:02:03Z",
}


def decoder(run_id: str | None = "run-1") -> PageBatches:
    return PageBatches(BOOKINGS, extracted_at=EXTRACTED_AT, run_id=run_id, partition_value=DAY)


def answer(records: Sequence[Mapping[str, object]]) -> bytes:
    return orjson.dumps(
        {
            "data": list(records),
            "errors": {},
            "totalCount": len(records),
            "count": len(records),
            "currentPage": 1,
            "numberOfPages": 1,
        }
    )


def exact(raw: bytes, run_id: str | None = "run-1") -> pa.RecordBatch:
    body = orjson.loads(raw)
    return decoder(run_id).from_records(body["data"])


@pytest.mark.parametrize("run_id", ["run-1", None, ""])
def test_a_conforming_answer_is_read_fast_and_equals_the_exact_path(run_id: str | None) -> None:
    raw = answer([BOOKING, {**BOOKING, "uid": "second", "hosts": [], "capacity": None}])
    decoded = decoder(run_id).decode(raw)
    assert decoded is not None
    envelope, batch, keys = decoded
    assert envelope == {
        "totalCount": 2,
        "count": 2,
        "currentPage": 1,
        "numberOfPages": 1,
        "nextPage": None,
    }
    assert keys == ["mzgdPJVBb7RE", "second"]
    assert batch.equals(exact(raw, run_id))
    assert batch.column("started_at")[0].as_py() == dt.datetime(2026, 11, 25, 0, 45, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("unknown field: belongs in _extra", {"newField": 1}),
        ("unknown nested field", {"hosts": [{"userId": "u", "role": "r", "team": "x"}]}),
        ("zone-less time: the exact path refuses it", {"startedAt": "2026-11-25T00:45:00"}),
        ("a date is not an instant", {"startedAt": "2026-11-25"}),
        ("required value missing", {"uid": None}),
        ("float in an integer column", {"capacity": 2.0}),
        ("integer beyond int32", {"capacity": 2**40}),
        ("number in a text column", {"name": 12}),
        ("text where a list belongs", {"hosts": "u1"}),
    ],
)
def test_anything_irregular_takes_the_exact_path(why: str, change: dict[str, object]) -> None:
    raw = answer([BOOKING, {**BOOKING, **change}])
    assert decoder().decode(raw) is None, why


@pytest.mark.parametrize(
    "raw",
    [
        answer([BOOKING]).replace(b'"name":"', b'"name":"\xff\xfe'),  # invalid UTF-8
        answer([BOOKING]).replace(b'"status":"open"', b'"status":"\\ud800"'),  # lone surrogate
        answer([BOOKING]).replace(b'"capacity":2', b'"capacity":NaN'),
        answer([BOOKING]).replace(b'"status":"open"', b'"status":"open","status":"x"'),  # twice
        answer([BOOKING]).replace(b'"capacity":2', b'"capacity":99999999999999999999999'),
        answer([BOOKING]) + b"\n" + answer([BOOKING]),  # two documents
        b'{"data": null, "errors": {}}',
        b'{"errors": {}}',
        b"[]",
        b"",
    ],
)
def test_hostile_or_odd_bodies_are_never_read_fast(raw: bytes) -> None:
    assert decoder().decode(raw) is None


def test_a_pretty_printed_answer_reads_the_same() -> None:
    raw = orjson.dumps(orjson.loads(answer([BOOKING, BOOKING])), option=orjson.OPT_INDENT_2)
    decoded = decoder().decode(raw)
    assert decoded is not None
    assert decoded[1].equals(exact(raw))


def test_tables_whose_rows_are_not_the_records_never_read_fast() -> None:
    contacts = PageBatches(
        TABLES["booking_contacts"].spec, extracted_at=EXTRACTED_AT, run_id=None, partition_value=DAY
    )
    assert contacts.decode(answer([{"name": "x"}])) is None


_text = st.one_of(st.none(), st.text(max_size=8), st.integers(-3, 3))
_instant = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-11-25T00:45:00.000Z",
            "2026-11-25T09:45:00+09:00",
            "2026-11-25T00:45:00Z",
            "2026-11-25T00:45:00.5Z",
            "2026-11-25T00:45:00",
            "2026-13-25T00:45:00Z",
            "soon",
        ]
    ),
)
_record = st.fixed_dictionaries(
    {"uid": st.one_of(st.text(min_size=1, max_size=6), st.none())},
    optional={
        "name": _text,
        "status": _text,
        "startedAt": _instant,
        "endedAt": _instant,
        "capacity": st.one_of(st.none(), st.integers(-(2**33), 2**33), st.floats(0, 3)),
        "hosts": st.one_of(
            st.none(),
            st.lists(
                st.fixed_dictionaries(
                    {"userId": _text}, optional={"role": _text, "team": st.just("x")}
                ),
                max_size=2,
            ),
        ),
        "surprise": st.integers(0, 1),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record, max_size=4))
def test_fast_reader_agrees_with_the_exact_path_or_steps_aside(
    records: list[dict[str, object]],
) -> None:
    raw = answer(records)
    decoded = decoder().decode(raw)
    try:
        expected = exact(raw)
    except RecordConversionError:
        assert decoded is None  # the exact path refuses: the fast one must not accept
        return
    if decoded is not None:
        _, batch, keys = decoded
        assert batch.equals(expected)
        assert keys == [record.get("uid") for record in records]


def test_constant_columns_hold_their_value() -> None:
    assert constant_array(DAY, pa.date32(), 3).to_pylist() == [DAY] * 3
    assert (
        constant_array(EXTRACTED_AT, UTC_MS, 2).to_pylist()
        == [EXTRACTED_AT.replace(microsecond=678000)] * 2
    )
    assert constant_array("ラン", pa.string(), 2).to_pylist() == ["ラン", "ラン"]
    assert constant_array("", pa.string(), 2).to_pylist() == ["", ""]
    assert constant_array(None, pa.string(), 2).to_pylist() == [None, None]
    with pytest.raises(TypeError):
        constant_array(DAY, UTC_MS, 1)


# -- through the client, against the sandbox --------------------------------------------------


class JsonOnly(PageBatches):
    """A decoder that always steps aside: every page takes the client's JSON path."""

    def decode(self, raw: bytes) -> None:
        return None


def test_decoded_listing_equals_the_records_listing(sandbox: SandboxServer) -> None:
    async def run() -> tuple[list[pa.RecordBatch], list[pa.RecordBatch], list[dict[str, object]]]:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            fast = await client.list_bookings_pages(decoder())
            slow = await client.list_bookings_pages(
                JsonOnly(BOOKINGS, extracted_at=EXTRACTED_AT, run_id="run-1", partition_value=DAY)
            )
            records = await client.list_bookings()
            assert fast.total_count == slow.total_count == records.total_count
            return fast.pages, slow.pages, records.records

    fast, slow, records = asyncio.run(run())
    assert len(fast) > 1  # several pages
    expected = to_record_batch(
        BOOKINGS, records, extracted_at=EXTRACTED_AT, run_id="run-1", partition_value=DAY
    )
    assert pa.concat_batches(fast).equals(expected)  # type: ignore[attr-defined]
    assert pa.concat_batches(slow).equals(expected)  # type: ignore[attr-defined]


@pytest.mark.parametrize("variant", ["deep_nesting", "huge_number", "nan", "invalid_surrogate"])
def test_decoded_listing_refuses_hostile_json(sandbox: SandboxServer, variant: str) -> None:
    sandbox.set_faults({"rules": [{"kind": "hostile_json", "variant": variant}]})

    async def run() -> None:
        async with AsyncJicooClient(sandbox_settings(sandbox)) as client:
            await client.list_bookings_pages(decoder())

    with pytest.raises(ProtocolError):
        asyncio.run(run())


def test_extracting_bookings_never_imports_pandas(sandbox: SandboxServer, tmp_path: object) -> None:
    # pandas costs CPU in every process that imports it; pyarrow pulls it in on its first
    # conversion of a Python object, so this guards that the bookings path converts none.
    script = (
        "import datetime as dt, sys\n"
        "from jicoo_connector.extract import extract_range\n"
        "from jicoo_connector.config import ConnectorConfig\n"
        "day = dt.date.fromisoformat(sys.argv[2])\n"
        "settings = ConnectorConfig.from_env().settings()\n"
        "results = extract_range(settings, ['bookings'], day - dt.timedelta(days=3), "
        "day + dt.timedelta(days=3), sys.argv[1])\n"
        "assert sum(r.rows for r in results) > 0, results\n"
        "print('pandas' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_RATE_LIMIT": "1000",
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, str(tmp_path), sandbox.store.anchor.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "False"
