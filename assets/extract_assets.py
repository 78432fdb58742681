"""One asset per Jicoo table (key jicoo/<table>): each calls the library and adds metadata."""

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.metadata import RawMetadataValue

from assets.resources import JicooResource, WarehouseResource
from jicoo_connector.client import FetchReport
from jicoo_connector.extract import ExtractResult, extract_range
from jicoo_connector.quality import (
    QualityResult,
    Severity,
    contacts_reference_bookings,
    ended_after_started,
    extra_empty,
    key_unique_not_null,
    rows_match_total,
)
from jicoo_connector.storage import ParquetStore
from jicoo_connector.tables import TABLES

GROUP = "jicoo"
KINDS = {"jicoo", "parquet"}
PREVIEW_ROWS = 5
DAILY_TABLES = ("bookings", "booking_contacts")
SNAPSHOT_TABLES = ("schedules", "availability_calendars", "available_slots", "event_types", "users")


def asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["jicoo", table])


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def _check_names(table: str) -> list[str]:
    names = ["key_unique_not_null", "extra_empty"]
    if table in ("bookings", "schedules"):
        names.append("ended_after_started")
    if table == "bookings":
        names.append("rows_match_total")
    if table == "booking_contacts":
        names.append("contacts_reference_bookings")
    return names


def check_specs(table: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset_key(table)) for name in _check_names(table)]


def _quality(
    table: str, data: pa.Table, results: Sequence[ExtractResult], store: ParquetStore
) -> list[QualityResult]:
    spec = TABLES[table]
    found = [key_unique_not_null(data, spec.key_columns), extra_empty(data)]
    if table in ("bookings", "schedules"):
        found.append(ended_after_started(data))
    if table == "bookings":
        totals = [r.total_count for r in results]
        total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
        found.append(rows_match_total(len(data), total))
    if table == "booking_contacts":
        booking_uids: set[str] = set()
        for result in results:
            bookings = store.read_partition("bookings", result.partition_value)
            booking_uids.update(str(uid) for uid in bookings.column("uid").to_pylist())
        found.append(contacts_reference_bookings(data, booking_uids))
    return found


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


def _metadata(
    table: str,
    data: pa.Table,
    results: Sequence[ExtractResult],
    store: ParquetStore,
    seconds: float,
) -> dict[str, RawMetadataValue]:
    report = FetchReport()
    for result in results:
        report.merge(result.report)
    paths = [r.path for r in results if r.path]
    return {
        "dagster/row_count": len(data),
        "dagster/column_schema": column_schema(TABLES[table].schema),
        "dagster/uri": paths[0] if len(paths) == 1 else store.table_uri(table),
        "jicoo/partitions": ", ".join(str(r.partition_value) for r in results),
        # Dagster copies one run's metadata onto every partition of the range it materialized,
        # so dagster/row_count is the run's total; this is each day's own count.
        "jicoo/rows_by_partition": dg.MetadataValue.json(
            {str(r.partition_value): r.rows for r in results}
        ),
        "jicoo/duration_s": round(seconds, 3),
        "jicoo/preview": dg.MetadataValue.md(_preview(data)),
        **{f"jicoo/{name}": value for name, value in report.as_metadata().items()},
    }


def _extract(
    context: dg.AssetExecutionContext,
    table: str,
    jicoo: JicooResource,
    warehouse: WarehouseResource,
    days: Sequence[dt.date],
    zone: str,
) -> Iterator[dg.MaterializeResult[None]]:
    started = time.monotonic()
    store = ParquetStore(warehouse.root)
    results = extract_range(
        jicoo.settings(),
        [table],
        min(days),
        max(days),
        warehouse.root,
        zone=zone,
        run_id=context.run.run_id,
    )
    skipped = [r for r in results if r.skipped_reason]
    if skipped:
        # A 403 on this endpoint: the key may not read it. Skip the asset (and its checks),
        # keep the run green. Dagster skips the steps downstream of it (the warehouse reload).
        context.log.warning(f"jicoo/{table} skipped: {skipped[0].skipped_reason}")
        return
    results.sort(key=lambda r: r.partition_value)
    data = pa.concat_tables(
        [store.read_partition(table, r.partition_value) for r in results],
        promote_options="none",
    )
    selected = context.selected_asset_check_keys
    yield dg.MaterializeResult(
        asset_key=asset_key(table),
        metadata=_metadata(table, data, results, store, time.monotonic() - started),
        check_results=[
            _check_result(table, q)
            for q in _quality(table, data, results, store)
            if dg.AssetCheckKey(asset_key(table), q.name) in selected
        ],
    )


def _spec(table: str, description: str, deps: Sequence[dg.AssetKey] = ()) -> dg.AssetSpec:
    # skippable: a 403 yields nothing for the asset, and that must not fail the step.
    return dg.AssetSpec(
        asset_key(table),
        group_name=GROUP,
        kinds=KINDS,
        deps=deps,
        description=description,
        skippable=True,
    )


def _daily_asset(
    table: str, partitions: dg.DailyPartitionsDefinition, deps: Sequence[dg.AssetKey] = ()
) -> dg.AssetsDefinition:
    # A one-asset multi_asset rather than @asset: only can_subset makes the check outputs
    # optional, which a skipped (403) asset needs.
    zone = partitions.timezone

    @dg.multi_asset(
        name=f"jicoo__{table}",
        specs=[_spec(table, f"Jicoo {table}, one partition per calendar day in {zone}.", deps)],
        partitions_def=partitions,
        # One run extracts a whole range (backfills, the rolling refresh), days in parallel.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=check_specs(table),
        can_subset=True,
    )
    def _asset(
        context: dg.AssetExecutionContext, jicoo: JicooResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult[None]]:
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]
        yield from _extract(context, table, jicoo, warehouse, days, zone)

    return _asset


def _snapshot_asset(table: str, zone: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"jicoo__{table}",
        specs=[_spec(table, f"Jicoo {table}, a snapshot per day (today's is replaced on re-run).")],
        check_specs=check_specs(table),
        can_subset=True,
    )
    def _asset(
        context: dg.AssetExecutionContext, jicoo: JicooResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult[None]]:
        today = dt.datetime.now(ZoneInfo(zone)).date()
        yield from _extract(context, table, jicoo, warehouse, [today], zone)

    return _asset


def build_extract_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every extract asset, its days being ``partitions``' (calendar days in its zone)."""
    zone = partitions.timezone
    return [
        _daily_asset("bookings", partitions),
        # Contacts are checked against the same day's bookings partition: bookings come first.
        _daily_asset("booking_contacts", partitions, deps=[asset_key("bookings")]),
        *(_snapshot_asset(table, zone) for table in SNAPSHOT_TABLES),
    ]
