"""One asset per table of an organization (``jicoo/<organization>/<table>``): each calls the
library's ``extract_range`` and adds metadata, checks and a run-wide observation."""

import contextlib
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from jicoo_connector.dagster._metadata import (
    MetadataDict,
    check_result,
    check_specs,
    partition_metadata,
    quality,
    run_metadata,
    table_schema,
)
from jicoo_connector.dagster._names import NAMESPACE
from jicoo_connector.dagster._resources import JicooResource, WarehouseResource, resource
from jicoo_connector.dagster._setup import OrganizationSetup
from jicoo_connector.errors import ExtractError
from jicoo_connector.extract import TABLES, ExtractResult, extract_range
from jicoo_connector.extract.sources import DaySource
from jicoo_connector.quality import assess

KINDS = frozenset({NAMESPACE, "parquet"})
# On every extract asset: "day" or "snapshot", its table's partitioning.
PARTITIONING_TAG = "jicoo/partitioning"


class ExtractConfig(dg.Config):
    """Run config of a day table's extract asset."""

    full: bool = Field(
        default=False,
        description="Read everything again rather than carry unchanged rows over: "
        "booking_contacts then reads every booking's contacts, not only those of bookings that "
        "are new or whose updatedAt or status changed since the day's last extract (the weekly "
        "sweep). Tables that carry nothing over always read everything.",
    )


def _total_count(results: Sequence[ExtractResult]) -> int | None:
    totals = [r.total_count for r in results]
    return None if any(t is None for t in totals) else sum(t or 0 for t in totals)


def _materialize(
    context: dg.AssetExecutionContext,
    setup: OrganizationSetup,
    table: str,
    results: list[ExtractResult],
    started: float,
) -> Iterator[dg.MaterializeResult[None]]:
    """The asset's result. Each partition's materialization carries that partition's figures
    only; the run's figures (all its partitions) go to one AssetObservation of the asset."""
    key = setup.names.asset_key(table)
    skipped = [r for r in results if r.skipped_reason]
    if skipped:
        # A 403 on this endpoint while the key reads bookings: it may not read this table.
        # Skip the asset (and its checks), keep the run green, and say so on the asset; its
        # earlier partitions stay. Dagster skips the steps downstream (the warehouse reload).
        reason = skipped[0].skipped_reason
        context.log.warning(f"{key.to_user_string()} skipped: {reason}")
        context.log_event(
            dg.AssetObservation(
                asset_key=key,
                metadata={
                    "jicoo/skipped": f"{reason}; earlier partitions kept",
                    "jicoo/partitions_skipped": len(skipped),
                },
            )
        )
        return
    results.sort(key=lambda r: r.partition_value)
    run = run_metadata(results, time.monotonic() - started)
    metadata: MetadataDict = {"dagster/column_schema": table_schema(table)}
    if context.assets_def.partitions_def is None:
        (snapshot,) = results  # one partition, one run: its page shows both
        metadata.update({**run, **partition_metadata(snapshot)})
    else:
        for result in results:
            context.add_asset_metadata(
                partition_metadata(result),
                asset_key=key,
                partition_key=result.partition_value.isoformat(),
            )
        context.log_event(dg.AssetObservation(asset_key=key, metadata=run))
    selected = context.selected_asset_check_keys
    verdicts = assess(TABLES[table].spec, [quality(r) for r in results], _total_count(results))
    yield dg.MaterializeResult(
        asset_key=key,
        metadata=metadata,
        check_results=[
            check_result(key, q) for q in verdicts if dg.AssetCheckKey(key, q.name) in selected
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


def _spec(
    setup: OrganizationSetup, table: str, description: str, deps: Sequence[dg.AssetKey] = ()
) -> dg.AssetSpec:
    # skippable: a 403 yields nothing for the asset, and that must not fail the step.
    return dg.AssetSpec(
        setup.names.asset_key(table),
        group_name=setup.names.group,
        kinds=set(KINDS),
        tags={PARTITIONING_TAG: TABLES[table].spec.partitioning},
        deps=deps,
        description=description,
        skippable=True,
        # On the definition too: the UI lists the columns before the first materialization.
        metadata={"dagster/column_schema": table_schema(table)},
    )


def _description(setup: OrganizationSetup, table: str, tail: str) -> str:
    spec = setup.source(table).spec
    return f"{spec.description or f'Jicoo {table}.'} {tail}"


def _day_asset(setup: OrganizationSetup, source: DaySource) -> dg.AssetsDefinition:
    # A one-asset multi_asset rather than @asset: only can_subset makes the check outputs
    # optional, which a skipped (403) asset needs.
    names, table, fed_by = setup.names, source.table, source.feed.table
    zone = setup.config.timezone
    description = _description(setup, table, f"Partitioned by day in {zone}.")
    if fed_by != table:
        # Fed by another table's listing: read from that table's partition of the same day,
        # written by this run's step or an earlier run, so each row is listed once per run.
        description += (
            f" Made from the same day's {names.asset_key(fed_by).to_user_string()} partition."
        )
    deps = [] if fed_by == table else [names.asset_key(fed_by)]

    @dg.multi_asset(
        name=names.op(table),
        specs=[_spec(setup, table, description, deps)],
        partitions_def=setup.partitions,
        # One run extracts a whole range (backfills, the rolling refresh), days in parallel.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=check_specs(table, names.asset_key(table)),
        can_subset=True,
        pool=names.pool,
        required_resource_keys={names.api_resource, names.warehouse_resource},
    )
    def _asset(
        context: dg.AssetExecutionContext, config: ExtractConfig
    ) -> Iterator[dg.MaterializeResult[None]]:
        started = time.monotonic()
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]
        with _refused_key_fails_plainly():
            results = extract_range(
                resource(context, names.api_resource, JicooResource).settings(),
                [table],
                min(days),
                max(days),
                resource(context, names.warehouse_resource, WarehouseResource).root,
                zone=zone,
                run_id=context.run.run_id,
                full=config.full,
                feed_from_store=True,
            )
        yield from _materialize(context, setup, table, results, started)

    return _asset


def _snapshot_asset(setup: OrganizationSetup, table: str) -> dg.AssetsDefinition:
    names, zone = setup.names, setup.config.timezone
    description = _description(setup, table, "Today's snapshot; a re-run replaces it.")

    @dg.multi_asset(
        name=names.op(table),
        specs=[_spec(setup, table, description)],
        check_specs=check_specs(table, names.asset_key(table)),
        can_subset=True,
        pool=names.pool,
        required_resource_keys={names.api_resource, names.warehouse_resource},
    )
    def _asset(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[None]]:
        started = time.monotonic()
        today = dt.datetime.now(ZoneInfo(zone)).date()
        with _refused_key_fails_plainly():
            results = extract_range(
                resource(context, names.api_resource, JicooResource).settings(),
                [table],
                today,
                today,
                resource(context, names.warehouse_resource, WarehouseResource).root,
                zone=zone,
                run_id=context.run.run_id,
            )
        yield from _materialize(context, setup, table, results, started)

    return _asset


def build_extract_assets(setup: OrganizationSetup) -> list[dg.AssetsDefinition]:
    """Every chosen table of the registry as an asset, with one check per quality rule."""
    built = []
    for table in setup.tables:
        source = setup.source(table)
        if isinstance(source, DaySource):
            built.append(_day_asset(setup, source))
        else:
            built.append(_snapshot_asset(setup, table))
    return built
