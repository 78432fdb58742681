"""``jicoo/<organization>/warehouse``: the organization's Parquet tables loaded into its
warehouse. The loading itself is the library's (``jicoo_connector.warehouse``)."""

import dagster as dg
from pydantic import Field

from jicoo_connector.dagster._metadata import MetadataDict
from jicoo_connector.dagster._names import NAMESPACE
from jicoo_connector.dagster._resources import WarehouseResource, resource
from jicoo_connector.dagster._setup import OrganizationSetup
from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse import LoadReport, WarehouseTarget, load_warehouse

# Dagster's kind (and icon) for each backend: Dagster spells PostgreSQL "postgres".
BACKEND_KINDS = {"postgresql": "postgres"}
DEFAULT_BACKEND = "duckdb"


class WarehouseLoadConfig(dg.Config):
    full: bool = Field(
        default=False,
        description="Reload every partition, not only those written since their last load.",
    )


def warehouse_kind(location: str) -> str:
    """The Dagster kind of the warehouse at ``location`` (``duckdb``, ``postgres``...)."""
    try:
        backend: str = WarehouseTarget.parse(location).backend
    except WarehouseError:
        backend = DEFAULT_BACKEND  # a bad URL fails the load itself, with its message
    return BACKEND_KINDS.get(backend, backend)


def _metadata(target: WarehouseTarget, report: LoadReport, full: bool) -> MetadataDict:
    tables = report.tables.values()
    return {
        "dagster/uri": target.describe(),
        "dagster/row_count": report.total_rows,
        "jicoo/backend": target.backend,
        "jicoo/full_reload": full,
        "jicoo/partitions_loaded": report.loaded,
        "jicoo/partitions_skipped": report.skipped,
        "jicoo/rows_loaded": report.rows,
        "jicoo/loaded_partitions": dg.MetadataValue.json(
            {t.table: [str(day) for day in t.loaded] for t in tables if t.loaded}
        ),
        "jicoo/skipped_partitions": dg.MetadataValue.json(
            {t.table: [str(day) for day in t.skipped] for t in tables if t.skipped}
        ),
        "jicoo/tables": dg.MetadataValue.json(
            {
                t.table: {
                    "rows": t.total_rows,
                    "partitions_loaded": len(t.loaded),
                    "partitions_skipped": len(t.skipped),
                    "rows_loaded": t.rows,
                    "columns_added": t.columns_added,
                    "seconds": round(t.seconds, 3),
                }
                for t in tables
            }
        ),
    }


def build_warehouse_asset(setup: OrganizationSetup) -> dg.AssetsDefinition:
    """The asset; its kind names the backend the organization's settings name (read when
    the definitions are built, not at import)."""
    names, loaded = setup.names, setup.tables
    backend = setup.config.warehouse()

    @dg.asset(
        key=names.asset_key("warehouse"),
        group_name=names.group,
        kinds={NAMESPACE, warehouse_kind(backend)},
        deps=setup.keys(loaded),
        required_resource_keys={names.warehouse_resource},
        description=f"{names.organization}'s Parquet tables loaded into its warehouse (DuckDB "
        "file by default, or the warehouse URL): only partitions written since their last load, "
        "each table merged in one transaction; run config `full: true` reloads everything.",
    )
    def warehouse_tables(
        context: dg.AssetExecutionContext, config: WarehouseLoadConfig
    ) -> dg.MaterializeResult[None]:
        warehouse = resource(context, names.warehouse_resource, WarehouseResource)
        target = warehouse.warehouse()
        report = load_warehouse(
            target, warehouse.store(), tables=loaded, full=config.full, run_id=context.run.run_id
        )
        context.log.info(report.summary())
        return dg.MaterializeResult(metadata=_metadata(target, report, config.full))

    return warehouse_tables
