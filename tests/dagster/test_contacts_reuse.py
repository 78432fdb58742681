"""Each booking listed once per run, and contacts read only for bookings that changed.

Through Dagster against the session sandbox; the sandbox's request log is the witness.
"""

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import dagster as dg
import httpx
import pyarrow as pa
import pytest

from jicoo_connector.errors import MissingPartitionError
from jicoo_connector.extract import DEFAULT_MAX_BOOKING_DURATION, TABLES, day_window
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    definitions,
    materialize,
    observations,
    range_tags,
    store_of,
)
from tests.support.sandbox import TOKYO, tokyo_today

CONTACTS_OP = NAMES.op("booking_contacts")
DAILY = ("bookings", "booking_contacts")

CONTACTS_PATH = "/contacts"
FULL = {"ops": {CONTACTS_OP: {"config": {"full": True}}}}


@dataclass
class Run:
    result: dg.ExecuteInProcessResult
    log: list[dict[str, object]]

    def contacts_calls(self) -> list[str]:
        """The booking uids whose contacts were requested."""
        return [
            str(entry["path"]).split("/")[3]
            for entry in self.log
            if str(entry["path"]).endswith(CONTACTS_PATH)
        ]

    def listings(self) -> list[dict[str, list[str]]]:
        return [
            parse_qs(str(entry["query"]))
            for entry in self.log
            if entry["path"] == "/v1/bookings" and entry["method"] == "GET"
        ]

    def metadata(self, name: str) -> int:
        """The run's figure (all its partitions), from its observation of the asset."""
        (run,) = observations(self.result, NAMES.asset_key("booking_contacts"))
        value = run.metadata[name]
        assert isinstance(value, dg.IntMetadataValue)
        return value.value or 0


def _run(sandbox: SandboxServer, root: Path, days: list[dt.date], run_config: object = None) -> Run:
    sandbox.clear_requests()
    result = materialize(
        definitions(sandbox, root), DAILY, tags=range_tags(days[0], days[-1]), run_config=run_config
    )
    assert result.success
    return Run(result, sandbox.requests())


def _instant(value: object) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _uids_of(sandbox: SandboxServer, days: list[dt.date]) -> list[str]:
    start, end = day_window(days[0], TOKYO)[0], day_window(days[-1], TOKYO)[1]
    return [
        str(b["uid"])
        for b in sandbox.store.all_bookings()
        if start <= _instant(b["startedAt"]) < end
    ]


def _contacts(store: ParquetStore, days: list[dt.date]) -> pa.Table:
    return pa.concat_tables(
        [store.read_partition(TABLES["booking_contacts"].spec, day) for day in days]
    )


def _assert_each_day_listed_once(run: Run, days: list[dt.date]) -> None:
    # One listing walk for the range: every page asked for once, no second walk for contacts.
    pages = Counter(
        (q["startedAt"][0], q["endedAt"][0], q.get("page", ["1"])[0]) for q in run.listings()
    )
    assert pages
    assert set(pages.values()) == {1}, pages
    # Each chunk lists from its first day to the run's end plus the margin for late bookings'
    # ends (its size is its total less the next chunk's) and reads only its own rows, up to the
    # next listing's start: every listing ends at that one instant, every listing starts at a
    # day of the run or at its end (the count of what lies past it), and each day belongs to
    # exactly one listing's own part. A second walk (contacts listing a day again) would end
    # elsewhere or ask a page twice.
    run_start, run_end = day_window(days[0], TOKYO)[0], day_window(days[-1], TOKYO)[1]
    windows = sorted({(_instant(started), _instant(ended)) for started, ended, _ in pages})
    assert {ended for _, ended in windows} == {run_end + DEFAULT_MAX_BOOKING_DURATION}, windows
    starts = [started for started, _ in windows]
    day_starts = [day_window(day, TOKYO)[0] for day in days]
    assert starts[0] == run_start, windows
    assert set(starts) <= {*day_starts, run_end}, windows
    parts = list(zip(starts, [*starts[1:], run_end], strict=True))
    for day_start in day_starts:
        owners = [part for part in parts if part[0] <= day_start < part[1]]
        assert len(owners) == 1, (day_start, windows)


def test_a_run_lists_each_day_once_and_a_rerun_reads_only_changed_contacts(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    today = tokyo_today(sandbox)
    days = [today + dt.timedelta(days=offset) for offset in range(3)]
    store = store_of(definitions(sandbox, tmp_path))
    uids = _uids_of(sandbox, days)
    assert uids

    first = _run(sandbox, tmp_path, days)
    _assert_each_day_listed_once(first, days)
    assert sorted(first.contacts_calls()) == sorted(uids)
    assert (first.metadata("jicoo/contacts_fetched"), first.metadata("jicoo/contacts_reused")) == (
        len(uids),
        0,
    )
    before = _contacts(store, days)

    second = _run(sandbox, tmp_path, days)
    assert second.contacts_calls() == []
    assert (
        second.metadata("jicoo/contacts_fetched"),
        second.metadata("jicoo/contacts_reused"),
    ) == (
        0,
        len(uids),
    )
    # Carried over unchanged, lineage included: the rows were read from the API by run one.
    assert _contacts(store, days).equals(before)

    status = {str(b["uid"]): b["status"] for b in sandbox.store.all_bookings()}
    cancelled = next(uid for uid in uids if status[uid] == "open")
    response = httpx.post(
        f"{sandbox.base_url}/v1/bookings/{cancelled}/cancel",
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        json={"cancelReason": "test"},
    )
    assert response.status_code == httpx.codes.OK, response.text
    third = _run(sandbox, tmp_path, days)
    assert third.contacts_calls() == [cancelled]
    after = _contacts(store, days)
    assert after.drop_columns(["_extracted_at", "_run_id"]).equals(
        before.drop_columns(["_extracted_at", "_run_id"])
    )
    changed = after.filter(pa.compute.equal(after.column("booking_uid"), cancelled))
    assert set(changed.column("_run_id").to_pylist()) <= {third.result.run_id}

    full = _run(sandbox, tmp_path, days, FULL)
    assert sorted(full.contacts_calls()) == sorted(uids)
    assert full.metadata("jicoo/contacts_reused") == 0


def test_contacts_without_their_bookings_partition_say_what_to_run(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    day = tokyo_today(sandbox)
    with pytest.raises(MissingPartitionError, match=rf"bookings has no partition for {day}"):
        materialize(
            definitions(sandbox, tmp_path), ["booking_contacts"], partition_key=day.isoformat()
        )
    assert [e for e in sandbox.requests() if str(e["path"]).startswith("/v1/")] == []


def test_the_sweep_reads_every_contact_and_the_refresh_only_changed_ones(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # A fixed Sunday: what the schedules ask for does not depend on the day.
    moment = dt.datetime(2026, 3, 1, 4, tzinfo=TOKYO)
    context = dg.build_schedule_context(scheduled_execution_time=moment)
    defs = definitions(sandbox, tmp_path)
    sweep_schedule = defs.resolve_schedule_def(NAMES.schedule("sweep"))
    refresh_schedule = defs.resolve_schedule_def(NAMES.schedule("refresh"))
    (sweep,) = list(sweep_schedule.evaluate_tick(context).run_requests or [])
    (refresh,) = list(refresh_schedule.evaluate_tick(context).run_requests or [])
    day_tables = defs.resolve_job_def(NAMES.job("daily_tables")).asset_layer.selected_asset_keys

    def every_day_table(full: bool) -> dict[str, object]:
        ops = {"__".join(key.path) for key in day_tables}
        return {"ops": {op: {"config": {"full": full}} for op in ops}}

    assert NAMES.asset_key("booking_contacts") in day_tables
    assert sweep.run_config == every_day_table(True)
    assert refresh.run_config == every_day_table(False)
