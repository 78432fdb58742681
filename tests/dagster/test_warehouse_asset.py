"""`jicoo/warehouse` through Dagster into PostgreSQL, after the demo's extract path.

The snapshot assets and the warehouse asset are the demo's `jicoo_snapshots` job; the day tables
come from the same extraction the daily job runs.
"""

from pathlib import Path

import dagster as dg

from assets.extract_assets import snapshot_tables
from assets.resources import WarehouseResource
from assets.warehouse import warehouse_tables
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import extract_assets, jicoo_resource, materializations, range_tags
from tests.support.checksums import parquet_checksum, postgres_checksum
from tests.support.sandbox import tokyo_today

KEY = dg.AssetKey(["jicoo", "warehouse"])
SECRET = "dagster-pw-never-shown"

ASSETS = extract_assets()
SNAPSHOT_ASSETS = [ASSETS[table] for table in snapshot_tables()]


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = materializations(result, KEY)
    return {key: value.value for key, value in event.metadata.items()}


def test_the_warehouse_asset_loads_postgres_incrementally_with_metadata(
    sandbox: SandboxServer, postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    warehouse = WarehouseResource(root=str(tmp_path / "wh"), url=url)
    resources = {"jicoo": jicoo_resource(sandbox), "warehouse": warehouse}
    today = tokyo_today(sandbox)
    extracted = dg.materialize(
        [ASSETS["bookings"], ASSETS["booking_contacts"]],
        resources=resources,
        tags=range_tags(today, today),
    )
    assert extracted.success
    first = dg.materialize([*SNAPSHOT_ASSETS, warehouse_tables], resources=resources)
    assert first.success
    store = ParquetStore(warehouse.root)
    partitions = sum(len(store.list_partitions(TABLES[table].spec)) for table in TABLES)
    for table in TABLES:
        assert postgres_checksum(postgres_url, table) == parquet_checksum(store, table), table

    meta = _metadata(first)
    assert meta["jicoo/backend"] == "postgresql"
    assert meta["dagster/uri"] == postgres_url.replace("postgres@", "postgres:***@", 1)
    assert (meta["jicoo/partitions_loaded"], meta["jicoo/partitions_skipped"]) == (partitions, 0)
    total = sum(parquet_checksum(store, table)[0] for table in TABLES)
    assert meta["dagster/row_count"] == meta["jicoo/rows_loaded"] == total
    loaded = meta["jicoo/loaded_partitions"]
    assert isinstance(loaded, dict)
    assert loaded["bookings"] == [today.isoformat()]
    shown = " ".join(str(event) for event in first.all_events)
    assert SECRET not in shown

    again = dg.materialize([warehouse_tables], resources=resources)
    meta = _metadata(again)
    assert (meta["jicoo/partitions_loaded"], meta["jicoo/partitions_skipped"]) == (0, partitions)
    assert meta["dagster/row_count"] == total
    assert meta["jicoo/full_reload"] is False
    skipped = meta["jicoo/skipped_partitions"]
    assert isinstance(skipped, dict)
    assert skipped["bookings"] == [today.isoformat()]

    full = dg.materialize(
        [warehouse_tables],
        resources=resources,
        run_config={"ops": {"jicoo__warehouse": {"config": {"full": True}}}},
    )
    meta = _metadata(full)
    assert (meta["jicoo/partitions_loaded"], meta["jicoo/full_reload"]) == (partitions, True)
    assert meta["dagster/row_count"] == total
