"""`make demo`: sandbox up, the main extract job end to end through Dagster, a warehouse summary
(DuckDB by default; JICOO_DEMO_WAREHOUSE_URL=postgresql://... lands the tables in PostgreSQL),
then a write-back dry run and apply of a small change set. Prints where everything is.

Everything the demo writes lives in its own folder (``data/demo/`` unless ``--data-dir`` says
otherwise), never at the default paths a user's real ledger and warehouse use; the demo empties
that folder first, since each demo starts a new sandbox world.
"""

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from example_changeset import write_changeset  # noqa: E402 - scripts/ is this script's folder

from jicoo_connector.config import ConnectorConfig  # noqa: E402 - needs ROOT on the path
from jicoo_connector.settings import ApiKey  # noqa: E402

if TYPE_CHECKING:
    import dagster as dg

    from jicoo_connector.dagster import JicooNames

DEMO_DIR = ROOT / "data" / "demo"
# Marks a folder as the demo's own, so --data-dir never empties a folder the demo did not make.
DEMO_MARKER = ".jicoo-demo"
DEMO_PAST_DAYS = 3
DEMO_FUTURE_DAYS = 3
DEMO_BOOKINGS = 2000
DEMO_SEED = 7
SEPARATOR = "-" * 78
# The demo's own warehouse URL: asked for by name, never taken from JICOO_WAREHOUSE_URL.
DEMO_WAREHOUSE_ENV = "JICOO_DEMO_WAREHOUSE_URL"
# Dagster's event log at WARNING: the demo prints its own summary of each run.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def demo_config(
    data_dir: Path, base_url: str, api_key: str, warehouse_url: str | None = None
) -> ConnectorConfig:
    """The demo's settings: the sandbox, and every path under ``data_dir`` (also `make dev`'s).

    A warehouse or ledger URL in the environment is a real deployment's: the demo drops them.
    Its own warehouse URL is asked for by name (``JICOO_DEMO_WAREHOUSE_URL``).
    """
    config = ConnectorConfig.from_env(
        api_key=ApiKey(api_key),
        base_url=base_url,
        warehouse_root=str(data_dir / "warehouse"),
        duckdb_path=str(data_dir / "warehouse.duckdb"),
        ledger_path=str(data_dir / "ledger.sqlite"),
        apply_log_root=str(data_dir / "apply_log"),
        changeset_inbox=str(data_dir / "inbox"),
        webhook_db=str(data_dir / "webhook_events.sqlite"),
    )
    return dataclasses.replace(config, warehouse_url=warehouse_url, ledger_url=None)


def fresh_demo_dir(data_dir: Path) -> None:
    """Each demo starts a new sandbox, so the last demo's tables and ledger describe a world
    that no longer exists: empty the demo's own folder (only one the demo made)."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / DEMO_MARKER).exists():
            raise SystemExit(f"{data_dir} is not empty and not a demo folder; choose another")
        shutil.rmtree(data_dir)
    (data_dir / "inbox").mkdir(parents=True)
    (data_dir / DEMO_MARKER).write_text("made by scripts/demo.py; emptied by each demo\n")


def demo_dagster_home(data_dir: Path) -> Path:
    """The demo's own Dagster home (``<data_dir>/dagster_home``, also `make dev`'s), set in
    DAGSTER_HOME: its runs never land in a user's instance, whatever DAGSTER_HOME says."""
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # The same instance config as `make dagster-home`: telemetry off, one slot per pool.
        shutil.copyfile(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _extract(defs: "dg.Definitions", names: "JicooNames", today: dt.date, warehouse: str) -> None:
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    start = today - dt.timedelta(days=DEMO_PAST_DAYS)
    end = today + dt.timedelta(days=DEMO_FUTURE_DAYS)
    instance = dg.DagsterInstance.get()
    print(f"Extracting bookings and contacts for {start} .. {end} (one Dagster run)")
    daily = defs.resolve_job_def(names.job("daily_tables")).execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )
    print(f"  run {daily.run_id}: {'success' if daily.success else 'FAILED'}")
    print(f"Extracting snapshot tables and loading the warehouse {warehouse}")
    snapshots = defs.resolve_job_def(names.job("snapshots")).execute_in_process(
        instance=instance, run_config=QUIET
    )
    print(f"  run {snapshots.run_id}: {'success' if snapshots.success else 'FAILED'}")
    if not (daily.success and snapshots.success):
        raise SystemExit("the extract job failed; see the Dagster output above")


def _summary(config: ConnectorConfig) -> None:
    from jicoo_connector.extract import TABLES
    from jicoo_connector.warehouse import WarehouseTarget, query_warehouse

    warehouse = WarehouseTarget.parse(config.warehouse(), password=config.warehouse_password)
    root = config.warehouse_root
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


def _write_back(defs: "dg.Definitions", names: "JicooNames", path: Path) -> None:
    import dagster as dg

    job = defs.resolve_job_def(names.job("apply_changeset"))
    instance = dg.DagsterInstance.get()
    steps = (
        (True, "dry run (plan, sends nothing)"),
        (False, "apply"),
        (False, "apply again (the ledger makes it a no-op)"),
    )
    for dry_run, title in steps:
        print(SEPARATOR)
        print(f"Write-back {title}: {path}")
        result = job.execute_in_process(
            instance=instance,
            run_config={
                **QUIET,
                "ops": {
                    names.op("apply_log"): {
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=DEMO_DIR, help=f"the demo's own folder ({DEMO_DIR})"
    )
    data_dir: Path = parser.parse_args(argv).data_dir.resolve()

    from assets.definitions import build_definitions
    from jicoo_connector.dagster import JicooNames
    from jicoo_connector.warehouse import WarehouseTarget
    from jicoo_sandbox import SandboxProcess
    from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY

    started = time.monotonic()
    fresh_demo_dir(data_dir)
    print(f"Demo data (its own folder, emptied each run): {data_dir}")
    with SandboxProcess(seed=DEMO_SEED, bookings=DEMO_BOOKINGS) as sandbox:
        print(f"Sandbox: {DEMO_BOOKINGS} seeded bookings at {sandbox.base_url}")
        demo_warehouse = os.environ.get(DEMO_WAREHOUSE_ENV) or None
        config = demo_config(data_dir, sandbox.base_url, DEFAULT_SANDBOX_KEY, demo_warehouse)
        # The Dagster resources read the key and a warehouse URL only through EnvVar, at run
        # time: give them the demo's, never a real deployment's.
        os.environ["JICOO_API_KEY"] = DEFAULT_SANDBOX_KEY
        if demo_warehouse:
            os.environ["JICOO_WAREHOUSE_URL"] = demo_warehouse
        else:
            os.environ.pop("JICOO_WAREHOUSE_URL", None)
        demo_dagster_home(data_dir)
        defs = build_definitions(config)
        names = JicooNames(config.organization)
        today = dt.datetime.now(ZoneInfo(config.timezone)).date()
        _extract(defs, names, today, WarehouseTarget.parse(config.warehouse()).describe())
        _summary(config)
        changeset = data_dir / "changesets" / "demo.csv"
        # The sandbox process and the write-back job both run on the system clock.
        write_changeset(
            sandbox.base_url, DEFAULT_SANDBOX_KEY, changeset, dt.datetime.now(dt.timezone.utc)
        )
        _write_back(defs, names, changeset)
    print(SEPARATOR)
    print(f"Demo finished in {time.monotonic() - started:.1f} s.")
    print(f"Runs are in {data_dir / 'dagster_home'}; see them in the Dagster UI with: make dev")
    return 0


if __name__ == "__main__":
    sys.exit(main())
