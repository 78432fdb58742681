"""Adding a table is one declaration (CONTRIBUTING.md, "Adding a table"): registered, it is in
the CLI's --tables, in the Dagster asset graph with its checks, and extracted by the shared run
loop, with no other file touched."""

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.definitions import build_definitions
from jicoo_connector.cli import EXIT_OK, main
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.extract import (
    SOURCES,
    TableSource,
    extract_range,
    listing,
    register_table,
    unregister_table,
)
from jicoo_connector.quality import check_names
from jicoo_connector.settings import ApiKey, Settings
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import TABLES, TableSpec, column
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    TEST_BURST,
    TEST_RATE_LIMIT,
    check_evaluations,
    extract_assets,
    jicoo_resource,
    warehouse_resource,
)

TABLE = "user_roles"


def _roles(records: Iterable[Mapping[str, object]]) -> Iterator[Mapping[str, object]]:
    # Reshaping: only the fields this table is about (the rest would land in _extra).
    for user in records:
        yield {"uid": user["uid"], "role": user.get("role")}


# The whole declaration of the table: schema, key, partitioning, reshaping, endpoints, fetcher.
USER_ROLES = TableSource(
    TableSpec(
        TABLE,
        (
            column("uid", "uid", pa.string(), nullable=False, doc="The user's id."),
            column("role", "role", pa.string(), doc="The user's role in the organization."),
        ),
        ("uid",),
        "snapshot",
        rows=_roles,
    ),
    ("GET /v1/organization_users",),
    listing(lambda client: client.list_organization_users()),
)


@pytest.fixture
def user_roles() -> Iterator[TableSource]:
    register_table(USER_ROLES)
    try:
        yield USER_ROLES
    finally:
        unregister_table(TABLE)
    assert TABLE not in SOURCES
    assert TABLE not in TABLES


def _roles_in_sandbox(sandbox: SandboxServer) -> dict[str, object]:
    return {str(user["uid"]): user.get("role") for user in sandbox.store.users()}


def _rows(path: Path) -> dict[str, object]:
    read = pq.read_table(path)
    uids, roles = read.column("uid").to_pylist(), read.column("role").to_pylist()
    return {str(uid): role for uid, role in zip(uids, roles, strict=True)}


def test_a_registered_table_is_extracted_by_the_run_loop(
    user_roles: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = Settings(
        api_key=ApiKey(sandbox.api_key),
        base_url=sandbox.base_url,
        rate_limit=TEST_RATE_LIMIT,
        burst=TEST_BURST,
    )
    day = dt.date(2026, 1, 5)  # day tables only: a snapshot is dated today
    (result,) = extract_range(settings, [TABLE], day, day, str(tmp_path))
    expected = _roles_in_sandbox(sandbox)
    assert result.table == TABLE
    assert result.rows == len(expected) > 0
    assert result.path is not None
    assert _rows(Path(result.path)) == expected
    assert ParquetStore(tmp_path).has_partition(TABLE, result.partition_value)


def test_a_registered_table_is_in_the_cli_tables(
    user_roles: TableSource,
    system_sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    assert TABLE in capsys.readouterr().out.split()
    monkeypatch.setenv("JICOO_API_KEY", system_sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", system_sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", str(TEST_RATE_LIMIT))
    out = tmp_path / "wh"
    assert main(["extract", "--tables", TABLE, "--out", str(out), "--quiet"]) == EXIT_OK
    (written,) = (out / TABLE).rglob("*.parquet")
    assert _rows(written) == _roles_in_sandbox(system_sandbox)


def test_a_registered_table_is_an_asset_with_its_checks(
    user_roles: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    assets = extract_assets(ConnectorConfig())
    asset = assets[TABLE]
    key = dg.AssetKey(["jicoo", TABLE])
    assert {check.name for check in asset.check_specs} == set(check_names(TABLE))
    assert check_names(TABLE) == ("key_unique_not_null", "extra_empty")
    result = dg.materialize(
        [asset],
        resources={"jicoo": jicoo_resource(sandbox), "warehouse": warehouse_resource(tmp_path)},
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.asset_key == key
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == len(_roles_in_sandbox(sandbox))
    assert check_evaluations(result) == {
        f"jicoo/{TABLE}/key_unique_not_null": True,
        f"jicoo/{TABLE}/extra_empty": True,
    }


def test_a_registered_table_is_in_the_code_location_jobs_and_warehouse(
    user_roles: TableSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JICOO_API_KEY", "placeholder-key")
    defs = build_definitions(ConnectorConfig())
    key = dg.AssetKey(["jicoo", TABLE])
    snapshots = defs.resolve_job_def("jicoo_snapshots").asset_layer.selected_asset_keys
    assert key in snapshots
    daily = defs.resolve_job_def("jicoo_daily_tables").asset_layer.selected_asset_keys
    assert key not in daily
    graph = defs.resolve_asset_graph()
    assert key in graph.get(dg.AssetKey(["jicoo", "warehouse"])).parent_keys


def test_a_table_is_registered_once_and_built_ins_stay() -> None:
    register_table(USER_ROLES)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_table(USER_ROLES)
    finally:
        unregister_table(TABLE)
    with pytest.raises(ValueError, match="built in"):
        unregister_table("bookings")
