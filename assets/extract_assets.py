"""One asset per Jicoo table (key jicoo/<table>): each calls the library and adds metadata."""

import contextlib
import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.metadata import RawMetadataValue
from pydantic import Field

from assets.resources import API_POOL, JicooResource, WarehouseResource
from jicoo_connector.client import FetchReport
from jicoo_connector.errors import ExtractError
from jicoo_connector.extract import TABLES, ExtractResult, extract_range
from jicoo_connector.extract.sources import DaySource, SnapshotSource
from jicoo_connector.quality import (
    PartitionQuality,
    QualityResult,
    Severity,
    assess,
    check_description,
    check_names,
)

GROUP = "jicoo"
KINDS = {"jicoo", "parquet"}
PREVIEW_ROWS = 5


def daily_tables() -> tuple[str, ...]:
    """The registry's day-partitioned tables (jicoo_connector.extract.TABLES)."""
    return tuple(t for t, source in TABLES.items() if isinstance(source, DaySource))


def snapshot_tables() -> tuple[str, ...]:
    """The registry's daily-snapshot tables, built-in and registered (register_table)."""
    return tuple(t for t, source in TABLES.items() if not isinstance(source, DaySource))


# On every extract asset: "day" or "snapshot", its table's partitioning (the jobs select by it).
PARTITIONING_TAG = "jicoo/partitioning"


def asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["jicoo", table])


def op_name(table: str) -> str:
    """The op behind jicoo/<table>: the key of its run config (ExtractConfig) in a job."""
    return f"jicoo__{table}"


def column_schema(
    schema: pa.Schema, descriptions: Mapping[str, str] | None = None
) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                description=(descriptions or {}).get(f.name),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def table_schema(table: str) -> dg.TableSchema:
    """The table's columns, types and descriptions, from its spec in the registry."""
    spec = TABLES[table].spec
    return column_schema(spec.schema, spec.column_descriptions())


def check_specs(table: str) -> list[dg.AssetCheckSpec]:
    spec = TABLES[table].spec
    return [
        dg.AssetCheckSpec(name, asset=asset_key(table), description=check_description(spec, name))
        for name in check_names(spec)
    ]


def _check_result(table: str, result: QualityResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=result.name,
        asset_key=asset_key(table),
        passed=result.passed,
        severity=dg.AssetCheckSeverity.WARN
        if result.severity is Severity.WARN
        else dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata=dict(result.metadata),
    )


def _preview(data: pa.Table) -> str:
    head = data.slice(0, PREVIEW_ROWS).drop_columns(
        [c for c in data.column_names if c.startswith("_")]
    )
    return head.to_pandas().to_markdown(index=False) if len(head) else "(no rows)"


def _quality(result: ExtractResult) -> PartitionQuality:
    if result.quality is None:
        raise RuntimeError(f"{result.table} {result.partition_value}: written without quality")
    return result.quality


def _total_count(results: Sequence[ExtractResult]) -> int | None:
    totals = [r.total_count for r in results]
    return None if any(t is None for t in totals) else sum(t or 0 for t in totals)


def _metadata(
    table: str, results: Sequence[ExtractResult], seconds: float
) -> dict[str, RawMetadataValue]:
    """The run's figures. Dagster copies them onto every partition the run materialized
    (each partition's own row count, file and preview are added to it alone)."""
    report = FetchReport()
    for result in results:
        report.merge(result.report)
    metadata: dict[str, RawMetadataValue] = {
        "dagster/column_schema": table_schema(table),
        "jicoo/partitions": ", ".join(str(r.partition_value) for r in results),
        "jicoo/rows_by_partition": dg.MetadataValue.json(
            {str(r.partition_value): r.rows for r in results}
        ),
        "jicoo/duration_s": round(seconds, 3),
        **{f"jicoo/{name}": value for name, value in report.as_metadata().items()},
    }
    for name in sorted({name for r in results for name in r.counters}):
        metadata[f"jicoo/{name}"] = sum(r.counters.get(name, 0) for r in results)
    return metadata


def _partition_metadata(result: ExtractResult) -> dict[str, RawMetadataValue]:
    """One partition's own figures: what its page in the UI shows."""
    metadata: dict[str, RawMetadataValue] = {
        "dagster/row_count": result.rows,
        "jicoo/preview": dg.MetadataValue.md(_preview(_quality(result).preview)),
    }
    if result.path:
        metadata["dagster/uri"] = result.path
    for name, value in result.counters.items():
        metadata[f"jicoo/partition_{name}"] = value
    return metadata


def _materialize(
    context: dg.AssetExecutionContext, table: str, results: list[ExtractResult], started: float
) -> Iterator[dg.MaterializeResult[None]]:
    """The asset's result: metadata and checks from what was gathered while writing."""
    skipped = [r for r in results if r.skipped_reason]
    if skipped:
        # A 403 on this endpoint while the key reads bookings: it may not read this table.
        # Skip the asset (and its checks), keep the run green, and say so on the asset; its
        # earlier partitions stay. Dagster skips the steps downstream (the warehouse reload).
        reason = skipped[0].skipped_reason
        context.log.warning(f"jicoo/{table} skipped: {reason}")
        context.log_event(
            dg.AssetObservation(
                asset_key=asset_key(table),
                metadata={
                    "jicoo/skipped": f"{reason}; earlier partitions kept",
                    "jicoo/partitions_skipped": len(skipped),
                },
            )
        )
        return
    results.sort(key=lambda r: r.partition_value)
    metadata = _metadata(table, results, time.monotonic() - started)
    if context.assets_def.partitions_def is None:
        (snapshot,) = results
        metadata.update(_partition_metadata(snapshot))
    else:
        # One materialization per partition, each with its own row count (it overrides the
        # run's metadata of the same key): a partition's page shows that partition.
        for result in results:
            context.add_asset_metadata(
                _partition_metadata(result),
                asset_key=asset_key(table),
                partition_key=result.partition_value.isoformat(),
            )
    selected = context.selected_asset_check_keys
    verdicts = assess(TABLES[table].spec, [_quality(r) for r in results], _total_count(results))
    yield dg.MaterializeResult(
        asset_key=asset_key(table),
        metadata=metadata,
        check_results=[
            _check_result(table, q)
            for q in verdicts
            if dg.AssetCheckKey(asset_key(table), q.name) in selected
        ],
    )


@contextlib.contextmanager
def _refused_key_fails_plainly() -> Iterator[None]:
    """A key the API refuses fails the step with the library's one line (it names
    JICOO_API_KEY) and is never retried: no retry mends a configuration error."""
    try:
        yield
    except ExtractError as exc:
        if not exc.key_refused:
            raise
        raise dg.Failure(description=exc.message, allow_retries=False) from None


def partitioning_selection(partitioning: str) -> dg.AssetSelection:
    """The extract assets of day tables (``"day"``) or snapshot tables (``"snapshot"``),
    resolved when the definitions load: a table registered later is in it."""
    return dg.AssetSelection.tag(PARTITIONING_TAG, partitioning)


def _spec(table: str, description: str, deps: Sequence[dg.AssetKey] = ()) -> dg.AssetSpec:
    # skippable: a 403 yields nothing for the asset, and that must not fail the step.
    return dg.AssetSpec(
        asset_key(table),
        group_name=GROUP,
        kinds=KINDS,
        tags={PARTITIONING_TAG: TABLES[table].spec.partitioning},
        deps=deps,
        description=description,
        skippable=True,
        # On the definition too: the UI lists the columns before the first materialization.
        metadata={"dagster/column_schema": table_schema(table)},
    )


class ExtractConfig(dg.Config):
    """Run config of a day table's extract asset."""

    full: bool = Field(
        default=False,
        description="Read everything again rather than carry unchanged rows over: "
        "booking_contacts then reads every booking's contacts, not only those of bookings that "
        "are new or whose updatedAt or status changed since the day's last extract (the weekly "
        "sweep). Tables that carry nothing over always read everything.",
    )


def _daily_asset(
    source: DaySource, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    # A one-asset multi_asset rather than @asset: only can_subset makes the check outputs
    # optional, which a skipped (403) asset needs.
    table, zone, fed_by = source.table, partitions.timezone, source.feed.table
    description = f"{source.spec.description or f'Jicoo {table}.'} Partitioned by day in {zone}."
    if fed_by != table:
        # Fed by another table's listing: read from that table's partition of the same day,
        # written by this run's step or an earlier run, so each row is listed once per run.
        description += f" Made from the same day's jicoo/{fed_by} partition."

    @dg.multi_asset(
        name=op_name(table),
        specs=[_spec(table, description, deps=[] if fed_by == table else [asset_key(fed_by)])],
        partitions_def=partitions,
        # One run extracts a whole range (backfills, the rolling refresh), days in parallel.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=check_specs(table),
        can_subset=True,
        pool=API_POOL,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        jicoo: JicooResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult[None]]:
        started = time.monotonic()
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]
        with _refused_key_fails_plainly():
            results = extract_range(
                jicoo.settings(),
                [table],
                min(days),
                max(days),
                warehouse.root,
                zone=zone,
                run_id=context.run.run_id,
                full=config.full,
                feed_from_store=True,
            )
        yield from _materialize(context, table, results, started)

    return _asset


def _snapshot_asset(source: SnapshotSource, zone: str) -> dg.AssetsDefinition:
    table = source.table
    description = f"{source.spec.description or f'Jicoo {table}.'} Today's is replaced on re-run."

    @dg.multi_asset(
        name=op_name(table),
        specs=[_spec(table, description)],
        check_specs=check_specs(table),
        can_subset=True,
        pool=API_POOL,
    )
    def _asset(
        context: dg.AssetExecutionContext, jicoo: JicooResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult[None]]:
        started = time.monotonic()
        today = dt.datetime.now(ZoneInfo(zone)).date()
        with _refused_key_fails_plainly():
            results = extract_range(
                jicoo.settings(),
                [table],
                today,
                today,
                warehouse.root,
                zone=zone,
                run_id=context.run.run_id,
            )
        yield from _materialize(context, table, results, started)

    return _asset


def build_extract_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every table of the registry as an asset (with one check per quality rule of its spec),
    its days being ``partitions``' (calendar days in its zone)."""
    return [
        _daily_asset(source, partitions)
        if isinstance(source, DaySource)
        else _snapshot_asset(source, partitions.timezone)
        for source in TABLES.values()
    ]
