"""An organization's write-back: ``jicoo/<organization>/apply_log`` (a change-set CSV applied
exactly once through its own ledger), its job, and the sensor on its change-set inbox."""

import codecs
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
from pydantic import Field

from jicoo_connector.changes import (
    APPLY_LOG,
    DEFAULT_APPLY_CONCURRENCY,
    DONE_STATES,
    IN_FLIGHT_STATES,
    ApplyReport,
    ChangesetRun,
    InboxFile,
    Ledger,
    read_inbox_file,
    run_changeset,
    scan_inbox,
)
from jicoo_connector.dagster._metadata import MetadataDict, spec_schema
from jicoo_connector.dagster._names import NAMESPACE, JicooNames
from jicoo_connector.dagster._resources import (
    JicooResource,
    WriteBackResource,
    ledger_kind,
    resource,
)
from jicoo_connector.dagster._setup import AssetJob, OrganizationSetup
from jicoo_connector.redaction import redact_location

APPLY_LOG_TABLE = APPLY_LOG.name
NO_CHANGE_IN_FLIGHT = "no_change_in_flight"
# WARN: rows that did not go through are the user's to fix; the run itself did its job.
EVERY_ROW_WENT_THROUGH = "every_row_went_through"
INBOX_INTERVAL_S = 30


class ApplyChangesetConfig(dg.Config):
    path: str = Field(description="The change-set CSV to apply.")
    dry_run: bool = Field(default=False, description="Plan only: read bookings, send nothing.")
    concurrency: int = Field(
        default=DEFAULT_APPLY_CONCURRENCY, description="Changes in flight at once."
    )
    batch_id: str | None = Field(
        default=None,
        description="Ledger batch id; default the file name. Same id + other content = refused.",
    )
    strict: bool = Field(default=False, description="Refuse the whole file if any row is bad.")
    encoding: str | None = Field(default=None, description="e.g. cp932 for Japanese Excel.")
    inbox: str | None = Field(
        default=None,
        description="Set by the inbox sensor: `path` must still be a regular file directly "
        "in this folder (no link followed) when the run reads it.",
    )


def _observe_plan(context: dg.AssetExecutionContext, key: dg.AssetKey, run: ChangesetRun) -> None:
    """A dry run changes nothing, so it is an observation, not a new apply_log."""
    if run.plan is None or run.plan_path is None:
        return
    counts = run.plan.counts()
    context.log.info(f"plan written to {run.plan_path}: {counts}")
    context.log_event(
        dg.AssetObservation(
            asset_key=key,
            metadata={
                "jicoo/dry_run": True,
                "jicoo/plan_path": dg.MetadataValue.path(str(run.plan_path)),
                **{f"jicoo/plan/{verdict}": n for verdict, n in counts.items()},
            },
        )
    )


def _apply_metadata(
    report: ApplyReport, out: Path, batch_id: str, location: str, backend: str
) -> MetadataDict:
    return {
        "dagster/row_count": len(report.rows),
        "dagster/uri": str(out),
        "dagster/column_schema": spec_schema(APPLY_LOG),
        "jicoo/batch_id": batch_id,
        "jicoo/ledger": redact_location(location),
        "jicoo/ledger_backend": backend,
        "jicoo/posts_sent": report.posts_sent,
        "jicoo/summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
        **{f"jicoo/state/{state}": n for state, n in report.counts.items()},
    }


def _results(
    context: dg.AssetExecutionContext, key: dg.AssetKey, location: str, run: ChangesetRun
) -> Iterator[dg.MaterializeResult[None]]:
    """The apply_log materialization and its check; a dry run's plan is an observation."""
    if run.rejected_path is not None:
        context.log.warning(
            f"{len(run.not_done)} rows did not go through; their reasons are in {run.rejected_path}"
        )
    if run.plan is not None:
        _observe_plan(context, key, run)
        return
    report, out, batch_id = run.report, run.apply_log, run.batch_id
    if report is None or out is None:  # only a dry run has neither
        raise dg.DagsterInvariantViolationError("the apply returned no report")
    context.log.info(report.summary())
    with Ledger(location) as ledger:
        ledger_counts = ledger.counts(batch_id)
        backend = ledger.backend
    checks = {
        NO_CHANGE_IN_FLIGHT: in_flight_check(key, batch_id, ledger_counts),
        EVERY_ROW_WENT_THROUGH: rows_check(key, len(report.rows), report.counts, run.rejected_path),
    }
    selected = context.selected_asset_check_keys
    yield dg.MaterializeResult(
        asset_key=key,
        metadata=_apply_metadata(report, out, batch_id, location, backend),
        check_results=[c for n, c in checks.items() if dg.AssetCheckKey(key, n) in selected],
    )


def in_flight_check(
    key: dg.AssetKey, batch_id: str, ledger_counts: Mapping[str, int]
) -> dg.AssetCheckResult:
    """ERROR when changes of the batch are left sent without an answer (the next run reads
    them back before anything is resent)."""
    in_flight = sum(ledger_counts.get(state, 0) for state in IN_FLIGHT_STATES)
    return dg.AssetCheckResult(
        check_name=NO_CHANGE_IN_FLIGHT,
        asset_key=key,
        passed=in_flight == 0,
        description=f"{in_flight} changes of batch {batch_id} left in intent/in doubt",
        metadata={"in_flight": in_flight},
    )


def rows_check(
    key: dg.AssetKey, rows: int, counts: Mapping[str, int], rejected: Path | None
) -> dg.AssetCheckResult:
    """WARN when rows did not go through: how many, in which states, and the file to fix."""
    not_done = {state: n for state, n in counts.items() if state not in DONE_STATES}
    left = sum(not_done.values())
    metadata: dict[str, dg.RawMetadataValue] = {
        "jicoo/rows": rows,
        "jicoo/rows_not_done": left,
        **{f"jicoo/state/{state}": n for state, n in not_done.items()},
    }
    if rejected is not None:
        metadata["jicoo/rejected_path"] = dg.MetadataValue.path(str(rejected))
    return dg.AssetCheckResult(
        check_name=EVERY_ROW_WENT_THROUGH,
        asset_key=key,
        passed=left == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{left} of {rows} rows did not go through"
        + (f"; fix them in {rejected} and resubmit it as is" if rejected else ""),
        metadata=metadata,
    )


def _spec(setup: OrganizationSetup) -> dg.AssetSpec:
    names = setup.names
    return dg.AssetSpec(
        names.asset_key(APPLY_LOG_TABLE),
        group_name=names.group,
        # Its icons: ours, Parquet, and the backend of the ledger it writes through.
        kinds={NAMESPACE, "parquet", ledger_kind(setup.config.ledger_location())},
        skippable=True,
        description=f"{APPLY_LOG.description} Before, target, after, state and reason of "
        f"each of {names.organization}'s changes. A dry run records an observation with the "
        "plan's counts instead.",
        metadata={"dagster/column_schema": spec_schema(APPLY_LOG)},
    )


def build_apply_log_asset(setup: OrganizationSetup) -> dg.AssetsDefinition:
    names = setup.names
    key = names.asset_key(APPLY_LOG_TABLE)

    # A one-asset multi_asset: a dry run yields neither the asset nor its check, and only
    # can_subset makes the check output optional.
    @dg.multi_asset(
        name=names.op(APPLY_LOG_TABLE),
        specs=[_spec(setup)],
        check_specs=[
            dg.AssetCheckSpec(
                NO_CHANGE_IN_FLIGHT,
                asset=key,
                description="No change of the batch is left in intent or in doubt: each one "
                "ended applied, already in target, in conflict, failed or pending.",
            ),
            dg.AssetCheckSpec(
                EVERY_ROW_WENT_THROUGH,
                asset=key,
                description="Every row of the change set ended applied or already in target. "
                "Fails (WARN) when rows were rejected, refused or failed: they are in the "
                "metadata's jicoo/rejected_path, to fix in place and resubmit as is.",
            ),
        ],
        can_subset=True,
        # Write-back spends the same account's requests as the extracts.
        pool=names.pool,
        required_resource_keys={names.api_resource, names.writeback_resource},
    )
    def apply_log(
        context: dg.AssetExecutionContext, config: ApplyChangesetConfig
    ) -> Iterator[dg.MaterializeResult[None]]:
        writeback = resource(context, names.writeback_resource, WriteBackResource)
        location = writeback.ledger_location()
        # The sensor checked the file; it is checked again as it is read, in case it was swapped.
        content = None if config.inbox is None else read_inbox_file(config.inbox, config.path)
        run = run_changeset(
            resource(context, names.api_resource, JicooResource).settings(),
            config.path,
            content=content,
            ledger=location,
            apply_log_root=writeback.apply_log_root,
            batch_id=config.batch_id,
            dry_run=config.dry_run,
            concurrency=config.concurrency,
            encoding=config.encoding,
            strict=config.strict,
        )
        yield from _results(context, key, location, run)

    return apply_log


def build_apply_job(names: JicooNames) -> AssetJob:
    return dg.define_asset_job(
        names.job("apply_changeset"),
        selection=dg.AssetSelection.assets(names.asset_key(APPLY_LOG_TABLE)),
        description=f"Validate, plan (dry_run) or apply a change-set CSV through "
        f"{names.organization}'s ledger.",
    )


def inbox_encoding(path: Path) -> str | None:
    """``orders.cp932.csv`` is read as cp932: a second suffix that names a codec is the
    encoding (``orders.v2.csv`` is plain UTF-8)."""
    suffixes = path.suffixes
    if len(suffixes) < 2:
        return None
    try:
        return codecs.lookup(suffixes[-2][1:]).name
    except LookupError:
        return None


def inbox_run_request(names: JicooNames, change_set: InboxFile, inbox: str) -> dg.RunRequest:
    path, content_hash = change_set.path, change_set.sha256
    config = {
        # Absolute (inside the resolved inbox): the run may start elsewhere.
        "path": str(path),
        "batch_id": f"{path.stem}-{content_hash[:12]}",
        "encoding": inbox_encoding(path),
        "inbox": inbox,
    }
    # The same content never starts twice; an edited file is a new batch.
    return dg.RunRequest(
        run_key=f"{path.name}:{content_hash}",
        run_config={"ops": {names.op(APPLY_LOG_TABLE): {"config": config}}},
    )


def build_inbox_sensor(names: JicooNames, job: AssetJob) -> dg.SensorDefinition:
    sensor_name = names.sensor("changeset_inbox")

    @dg.sensor(
        name=sensor_name,
        job=job,
        minimum_interval_seconds=INBOX_INTERVAL_S,
        # Running by default: a CSV dropped in the inbox is a request to apply it, and a
        # stopped sensor would leave it waiting with no sign.
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={names.writeback_resource},
        description=f"Running by default: starts {job.name} once per CSV content dropped in "
        f"{names.organization}'s change-set inbox (its writeback resource's inbox). Name a "
        "file <name>.cp932.csv to have it read as cp932 (any Python codec name works). Only "
        "regular files directly in the inbox are taken: links, folders, FIFOs and the like are "
        "skipped with a warning in the tick's log. Stop it in the UI, or with `dagster sensor "
        f"stop {sensor_name}`, to apply by hand only.",
    )
    def changeset_inbox_sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest]:
        inbox = resource(context, names.writeback_resource, WriteBackResource).inbox
        scan = scan_inbox(inbox)
        for skipped in scan.skipped:
            # Quoted: a name may hold line breaks or terminal escapes that would forge log lines.
            context.log.warning(f"change-set inbox: skipped {skipped.name!r}: it {skipped.reason}")
        for change_set in scan.files:
            yield inbox_run_request(names, change_set, inbox)

    return changeset_inbox_sensor
