"""`make demo`: sandbox up, the main extract job end to end through Dagster, a warehouse summary
(DuckDB by default; JICOO_WAREHOUSE_URL=postgresql://... lands the tables in PostgreSQL), then a
write-back dry run and apply of a small change set. Prints where everything is."""

import csv
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from jicoo_connector.warehouse import WarehouseTarget

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEMO_PAST_DAYS = 3
DEMO_FUTURE_DAYS = 3
DEMO_BOOKINGS = 2000
DEMO_SEED = 7
DEMO_RESCHEDULES = 4
DEMO_CANCELS = 2
SEPARATOR = "-" * 78
# Dagster's event log at WARNING: the demo prints its own summary of each run.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _fresh_state() -> None:
    """Each demo starts a new sandbox, so the last demo's tables and ledger describe a world
    that no longer exists: start from empty (only demo-owned paths under data/)."""
    for path in (DATA / "warehouse", DATA / "apply_log"):
        shutil.rmtree(path, ignore_errors=True)
    for path in DATA.glob("warehouse.duckdb*"):
        path.unlink()
    for path in DATA.glob("ledger.sqlite*"):
        path.unlink()


def _configure(base_url: str, api_key: str) -> None:
    # The code location reads these when it is imported, so set them first.
    os.environ["JICOO_API_KEY"] = api_key
    os.environ["JICOO_BASE_URL"] = base_url
    os.environ.setdefault("JICOO_WAREHOUSE_ROOT", str(DATA / "warehouse"))
    os.environ.setdefault("JICOO_DUCKDB_PATH", str(DATA / "warehouse.duckdb"))
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # The same instance config as `make dagster-home`: telemetry off, the jicoo_api pool.
        shutil.copyfile(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")


def _extract(today: dt.date) -> None:
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from assets.definitions import defs

    start = today - dt.timedelta(days=DEMO_PAST_DAYS)
    end = today + dt.timedelta(days=DEMO_FUTURE_DAYS)
    instance = dg.DagsterInstance.get()
    print(f"Extracting bookings and contacts for {start} .. {end} (one Dagster run)")
    daily = defs.resolve_job_def("jicoo_daily_tables").execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )
    print(f"  run {daily.run_id}: {'success' if daily.success else 'FAILED'}")
    print(f"Extracting snapshot tables and loading the warehouse {_warehouse().describe()}")
    snapshots = defs.resolve_job_def("jicoo_snapshots").execute_in_process(
        instance=instance, run_config=QUIET
    )
    print(f"  run {snapshots.run_id}: {'success' if snapshots.success else 'FAILED'}")
    if not (daily.success and snapshots.success):
        raise SystemExit("the extract job failed; see the Dagster output above")


def _warehouse() -> "WarehouseTarget":
    from jicoo_connector.warehouse import WarehouseTarget, warehouse_url_from_env

    return WarehouseTarget.parse(warehouse_url_from_env())


def _summary() -> None:
    from jicoo_connector.tables import TABLES
    from jicoo_connector.warehouse import query_warehouse

    warehouse = _warehouse()
    root = os.environ["JICOO_WAREHOUSE_ROOT"]
    print(SEPARATOR)
    print(f"Parquet tables under {root}/, warehouse {warehouse.describe()}")
    present = {
        str(name)
        for (name,) in query_warehouse(
            warehouse,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        )
    }
    for table in [t for t in TABLES if t in present]:
        (row,) = query_warehouse(warehouse, f'SELECT count(*) FROM "{table}"')  # noqa: S608
        print(f"  {table:<24} {row[0]:>7} rows   {root}/{table}/")
    query = (
        "SELECT day, status, count(*) AS bookings FROM bookings "
        "GROUP BY day, status ORDER BY day, status"
    )
    print(SEPARATOR)
    print(f"Example query: {query}")
    for day, status, count in query_warehouse(warehouse, query):
        print(f"  {day}  {status:<8} {count:>4}")


def _interval(booking: Mapping[str, object]) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.fromisoformat(str(booking["startedAt"])),
        dt.datetime.fromisoformat(str(booking["endedAt"])),
    )


def demo_changeset(base_url: str, api_key: str, path: Path, now: dt.datetime) -> None:
    """A change set made from the sandbox's current data, so its slots are free and after
    ``now`` (the sandbox's clock): clear of every host's bookings and of the slots the change
    set itself takes (the API refuses a move onto a host's other booking, including one moved
    there by an earlier row). tests/test_demo.py runs it on other days."""
    from jicoo_connector.changes.plan import host_ids
    from jicoo_connector.client import JicooClient
    from jicoo_connector.settings import ApiKey, Settings

    window = (now + dt.timedelta(days=10), now + dt.timedelta(days=13))
    settings = Settings(api_key=ApiKey(api_key), base_url=base_url)
    rows: list[dict[str, str]] = []
    with JicooClient(settings) as client:
        upcoming = client.list_bookings(
            started_at=now + dt.timedelta(days=2), ended_at=now + dt.timedelta(days=9)
        )
        open_bookings = [b for b in upcoming.records if b.get("status") == "open"]
        # Busy times per host in the target window: existing bookings, then the rows' targets.
        busy: list[tuple[frozenset[str], dt.datetime, dt.datetime]] = [
            (host_ids(b), *_interval(b))
            for b in client.list_bookings(
                started_at=window[0] - dt.timedelta(days=1),
                ended_at=window[1] + dt.timedelta(days=1),
            ).records
            if b.get("status") != "cancel" and b.get("startedAt") and b.get("endedAt")
        ]
        for booking in open_bookings:
            if len(rows) >= DEMO_RESCHEDULES:
                break
            hosts = host_ids(booking)
            start, end = _interval(booking)
            slots = client.list_available_slots(str(booking["eventTypeId"]), *window)
            for slot in slots:
                target = dt.datetime.fromisoformat(str(slot["startedAt"]))
                target_end = target + (end - start)
                if any(
                    hosts & others and target < other_end and other_start < target_end
                    for others, other_start, other_end in busy
                ):
                    continue
                busy.append((hosts, target, target_end))
                rows.append(
                    {
                        "action": "reschedule",
                        "booking_uid": str(booking["uid"]),
                        "new_started_at": str(slot["startedAt"]),
                        "time_zone": "Asia/Tokyo",
                        "cancel_reason": "",
                    }
                )
                break
        moved = {row["booking_uid"] for row in rows}
        for booking in [b for b in open_bookings if b["uid"] not in moved][:DEMO_CANCELS]:
            rows.append(
                {
                    "action": "cancel",
                    "booking_uid": str(booking["uid"]),
                    "new_started_at": "",
                    "time_zone": "",
                    "cancel_reason": "会議室が使えなくなりました (room closed)",
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_back(path: Path) -> None:
    import dagster as dg

    from assets.definitions import defs

    job = defs.resolve_job_def("apply_changeset")
    instance = dg.DagsterInstance.get()
    steps = (
        (True, "dry run (plan, sends nothing)"),
        (False, "apply"),
        (False, "apply again (the ledger makes it a no-op)"),
    )
    for dry_run, title in steps:
        print(SEPARATOR)
        print(f"Write-back {title}: {path.relative_to(ROOT)}")
        result = job.execute_in_process(
            instance=instance,
            run_config={
                **QUIET,
                "ops": {
                    "jicoo__apply_log": {
                        "config": {"path": str(path), "dry_run": dry_run, "concurrency": 4}
                    }
                },
            },
        )
        if not result.success:
            raise SystemExit("the write-back job failed; see the Dagster output above")
        for event in result.all_events:
            metadata = (
                event.asset_observation_data.asset_observation.metadata
                if event.is_asset_observation
                else event.step_materialization_data.materialization.metadata
                if event.is_step_materialization
                else {}
            )
            for key, value in metadata.items():
                if key.startswith(("jicoo/plan/", "jicoo/state/")) or key in (
                    "jicoo/posts_sent",
                    "jicoo/plan_path",
                    "dagster/uri",
                ):
                    print(f"  {key}: {value.value}")


def main() -> int:
    from jicoo_sandbox import SandboxProcess
    from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

    started = time.monotonic()
    with SandboxProcess(seed=DEMO_SEED, bookings=DEMO_BOOKINGS) as sandbox:
        print(f"Sandbox: {DEMO_BOOKINGS} seeded bookings at {sandbox.base_url}")
        _fresh_state()
        _configure(sandbox.base_url, DEFAULT_SANDBOX_KEY)
        today = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()
        _extract(today)
        _summary()
        changeset = DATA / "changesets" / "demo.csv"
        # The sandbox process and the write-back job both run on the system clock.
        demo_changeset(sandbox.base_url, DEFAULT_SANDBOX_KEY, changeset, dt.datetime.now(dt.UTC))
        _write_back(changeset)
    print(SEPARATOR)
    print(f"Demo finished in {time.monotonic() - started:.1f} s.")
    print("Open the Dagster UI on the same setup with: make dev")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
