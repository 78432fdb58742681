"""The `jicoo/warehouse` asset: the extracted Parquet tables loaded into the configured warehouse.

The loading itself is the library's (`jicoo_connector.warehouse`); this adds config and metadata.
"""

import dagster as dg
from pydantic import Field

from assets.extract_assets import GROUP, asset_key, daily_tables, snapshot_tables
from assets.resources import WarehouseResource
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import WarehouseError
from jicoo_connector.warehouse import WarehouseTarget, load_warehouse


class WarehouseLoadConfig(dg.Config):
    full: bool = Field(
        default=False,
        description="Reload every partition, not only those written since their last load.",
    )


def build_warehouse_asset(connector: ConnectorConfig) -> dg.AssetsDefinition:
    """The asset, its UI kind tag the backend ``connector`` names (read when the code location
    loads, not at import)."""
    try:
        kind: str = WarehouseTarget.parse(connector.warehouse()).backend
    except WarehouseError:
        kind = "duckdb"  # a bad URL fails the load itself, with its message
    # Every table of the registry, read when the code location builds its definitions.
    loaded = (*daily_tables(), *snapshot_tables())

    @dg.asset(
        key=asset_key("warehouse"),
        group_name=GROUP,
        kinds={kind},
        deps=[asset_key(table) for table in loaded],
        description="The Parquet tables loaded into the warehouse (JICOO_WAREHOUSE_URL; DuckDB by "
        "default): only partitions written since their last load, each table merged in one "
        "transaction; run config `full: true` reloads everything.",
    )
    def warehouse_tables(
        context: dg.AssetExecutionContext, config: WarehouseLoadConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult[None]:
        target = warehouse.warehouse()
        report = load_warehouse(
            target,
            warehouse.store(),
            tables=loaded,
            full=config.full,
            run_id=context.run.run_id,
        )
        context.log.info(report.summary())
        tables = report.tables.values()
        return dg.MaterializeResult(
            metadata={
                "dagster/uri": target.describe(),
                "dagster/row_count": report.total_rows,
                "jicoo/backend": target.backend,
                "jicoo/full_reload": config.full,
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
        )

    return warehouse_tables


# The default configuration's asset, for tests that build their own Definitions.
warehouse_tables = build_warehouse_asset(ConnectorConfig())


__all__ = ["WarehouseLoadConfig", "build_warehouse_asset", "warehouse_tables"]
