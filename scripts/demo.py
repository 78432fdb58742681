"""`make demo`: sandbox up, the main extract job end to end through Dagster, DuckDB summary,
then a write-back dry run and apply of a small change set. Prints where everything is."""

import csv
import datetime as dt
import os
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DEMO_PAST_DAYS = 3
DEMO_FUTURE_DAYS = 3
DEMO_BOOKINGS = 2000
DEMO_SEED = 7
DEMO_RESCHEDULES = 4
DEMO_CANCELS = 2
SEPARATOR = "-" * 78


def _configure(base_url: str, api_key: str) -> None:
    # The code location reads these when it is imported, so set them first.
    os.environ["JICOO_API_KEY"] = api_key
    os.environ["JICOO_BASE_URL"] = base_url
    os.environ.setdefault("JICOO_WAREHOUSE_ROOT", str(DATA / "warehouse"))
    os.environ.setdefault("JICOO_DUCKDB_PATH", str(DATA / "warehouse.duckdb"))
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").touch()


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
    daily = defs.get_job_def("jicoo_daily_tables").execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )
    print(f"  run {daily.run_id}: {'success' if daily.success else 'FAILED'}")
    print("Extracting snapshot tables and loading DuckDB (one Dagster run)")
    snapshots = defs.get_job_def("jicoo_snapshots").execute_in_process(instance=instance)
    print(f"  run {snapshots.run_id}: {'success' if snapshots.success else 'FAILED'}")
    if not (daily.success and snapshots.success):
        raise SystemExit("the extract job failed; see the Dagster output above")


def _summary() -> None:
    import duckdb

    duckdb_path = os.environ["JICOO_DUCKDB_PATH"]
    root = os.environ["JICOO_WAREHOUSE_ROOT"]
    print(SEPARATOR)
    print(f"Parquet tables under {root}/, warehouse {duckdb_path}")
    with duckdb.connect(duckdb_path, read_only=True) as con:
        tables = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
        for table in sorted(tables):
            row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
            print(f"  {table:<24} {row[0] if row else 0:>7} rows   {root}/{table}/")
        query = (
            "SELECT day, status, count(*) AS bookings FROM bookings "
            "GROUP BY ALL ORDER BY day, status"
        )
        print(SEPARATOR)
        print(f"Example query: {query}")
        for day, status, count in con.execute(query).fetchall():
            print(f"  {day}  {status:<8} {count:>4}")


def _demo_changeset(base_url: str, api_key: str, path: Path) -> None:
    """A change set made from the sandbox's current data, so its slots are free and future."""
    from jicoo_connector.client import JicooClient
    from jicoo_connector.settings import ApiKey, Settings

    now = dt.datetime.now(dt.UTC)
    settings = Settings(api_key=ApiKey(api_key), base_url=base_url)
    rows: list[dict[str, str]] = []
    with JicooClient(settings) as client:
        upcoming = client.list_bookings(
            started_at=now + dt.timedelta(days=2), ended_at=now + dt.timedelta(days=9)
        )
        open_bookings = [b for b in upcoming.records if b.get("status") == "open"]
        taken: set[str] = set()
        for booking in open_bookings:
            if len(rows) >= DEMO_RESCHEDULES:
                break
            slots = client.list_available_slots(
                str(booking["eventTypeId"]),
                now + dt.timedelta(days=10),
                now + dt.timedelta(days=13),
            )
            free = [str(s["startedAt"]) for s in slots if str(s["startedAt"]) not in taken]
            if free:
                taken.add(free[0])
                rows.append(
                    {
                        "action": "reschedule",
                        "booking_uid": str(booking["uid"]),
                        "new_started_at": free[0],
                        "time_zone": "Asia/Tokyo",
                        "cancel_reason": "",
                    }
                )
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

    job = defs.get_job_def("apply_changeset")
    instance = dg.DagsterInstance.get()
    for dry_run in (True, False):
        print(SEPARATOR)
        print(f"Write-back {'dry run (plan)' if dry_run else 'apply'} of {path.relative_to(ROOT)}")
        result = job.execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "apply_changeset_op": {
                        "config": {"path": str(path), "dry_run": dry_run, "concurrency": 4}
                    }
                }
            },
        )
        if not result.success:
            raise SystemExit("the write-back job failed; see the Dagster output above")
        summary = result.output_for_node("apply_changeset_op")
        print(summary)


def main() -> int:
    from jicoo_connector.sandbox import SandboxProcess
    from jicoo_connector.sandbox.config import DEFAULT_SANDBOX_KEY

    started = time.monotonic()
    with SandboxProcess(seed=DEMO_SEED, bookings=DEMO_BOOKINGS) as sandbox:
        print(f"Sandbox: {DEMO_BOOKINGS} seeded bookings at {sandbox.base_url}")
        _configure(sandbox.base_url, DEFAULT_SANDBOX_KEY)
        today = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()
        _extract(today)
        _summary()
        changeset = DATA / "changesets" / "demo.csv"
        _demo_changeset(sandbox.base_url, DEFAULT_SANDBOX_KEY, changeset)
        _write_back(changeset)
    print(SEPARATOR)
    print(f"Demo finished in {time.monotonic() - started:.1f} s.")
    print("Open the Dagster UI on the same setup with: make dev")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
