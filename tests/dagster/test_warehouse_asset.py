"""`jicoo/<organization>/warehouse` through Dagster into PostgreSQL, after the demo's extract path.

The snapshot assets and the warehouse asset are the demo's snapshots job; the day tables
come from the same extraction the daily job runs.
"""

from pathlib import Path

import dagster as dg
import pytest

from jicoo_connector.extract import TABLES
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    definitions,
    materializations,
    materialize,
    range_tags,
    store_of,
)
from tests.support.checksums import parquet_checksum, postgres_checksum
from tests.support.sandbox import tokyo_today

KEY = NAMES.asset_key("warehouse")
SECRET = "dagster-pw-never-shown"
URL_VARIABLE = "TEST_WAREHOUSE_URL"


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = materializations(result, KEY)
    return {key: value.value for key, value in event.metadata.items()}


def test_the_warehouse_asset_loads_postgres_incrementally_with_metadata(
    sandbox: SandboxServer, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL holds a password: Dagster gets it by EnvVar, the UI shows the variable only.
    monkeypatch.setenv(URL_VARIABLE, postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1))
    defs = definitions(sandbox, tmp_path, warehouse_url=dg.EnvVar(URL_VARIABLE))
    (spec,) = defs.resolve_assets_def(KEY).specs
    assert spec.kinds == {"jicoo", "postgres"}
    assert SECRET not in repr(defs.resources)
    today = tokyo_today(sandbox)
    extracted = materialize(defs, ["bookings", "booking_contacts"], tags=range_tags(today, today))
    assert extracted.success
    snapshot_tables = [t for t in TABLES if TABLES[t].spec.partitioning == "snapshot"]
    first = materialize(defs, [*snapshot_tables, "warehouse"])
    assert first.success
    store = store_of(defs)
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

    again = materialize(defs, ["warehouse"])
    meta = _metadata(again)
    assert (meta["jicoo/partitions_loaded"], meta["jicoo/partitions_skipped"]) == (0, partitions)
    assert meta["dagster/row_count"] == total
    assert meta["jicoo/full_reload"] is False
    skipped = meta["jicoo/skipped_partitions"]
    assert isinstance(skipped, dict)
    assert skipped["bookings"] == [today.isoformat()]

    full = materialize(
        defs, ["warehouse"], run_config={"ops": {NAMES.op("warehouse"): {"config": {"full": True}}}}
    )
    meta = _metadata(full)
    assert (meta["jicoo/partitions_loaded"], meta["jicoo/full_reload"]) == (partitions, True)
    assert meta["dagster/row_count"] == total


def test_a_password_in_the_warehouse_url_query_never_reaches_dagster(
    sandbox: SandboxServer, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dagster/uri` showed `?password=...`: the query's secret values are masked too."""
    monkeypatch.setenv(URL_VARIABLE, f"{postgres_url}?password={SECRET}&sslmode=disable")
    defs = definitions(sandbox, tmp_path, warehouse_url=dg.EnvVar(URL_VARIABLE))
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = materialize(defs, ["warehouse"], instance=instance)
        assert result.success
        assert _metadata(result)["dagster/uri"] == f"{postgres_url}?password=***&sslmode=disable"
        stored = instance.get_latest_materialization_event(KEY)
        assert stored is not None
        assert SECRET not in str(stored)
