"""The apply_changeset job: a change-set CSV applied exactly once, published as jicoo/apply_log."""

import codecs
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.extract_assets import column_schema
from assets.resources import API_POOL, DEFAULTS, JicooResource
from jicoo_connector.changes import (
    APPLY_LOG,
    DEFAULT_APPLY_CONCURRENCY,
    DONE_STATES,
    IN_FLIGHT_STATES,
    Ledger,
    Plan,
    is_postgres_url,
    redact_location,
    run_changeset,
)

APPLY_LOG_KEY = dg.AssetKey(["jicoo", "apply_log"])
# The op behind the asset: the key in run_config["ops"] for ApplyChangesetConfig.
APPLY_LOG_OP = "jicoo__apply_log"
# The asset's kinds (its icons in the UI) beside the ledger's backend, added by ledger_kind.
APPLY_LOG_KINDS = frozenset({"jicoo", "parquet"})


def ledger_kind(location: str) -> str:
    """The Dagster kind of the ledger at ``location``: ``postgres`` or ``sqlite``."""
    return "postgres" if is_postgres_url(location) else "sqlite"


class WriteBackResource(dg.ConfigurableResource["WriteBackResource"]):
    """Where write-back keeps its state (the ledger, the apply_log Parquet table) and the
    folder the inbox sensor watches."""

    ledger_path: str = Field(
        default=DEFAULTS.ledger_path, description="SQLite ledger file ($JICOO_LEDGER_PATH)."
    )
    ledger_url: str | None = Field(
        default=None,
        description="postgresql:// URL of a ledger shared by every worker; wins over "
        "ledger_path. Pass dg.EnvVar('JICOO_LEDGER_URL') so a password never shows.",
    )

    def ledger_location(self) -> str:
        return self.ledger_url or self.ledger_path

    apply_log_root: str = Field(
        default=DEFAULTS.apply_log_root,
        description="apply_log Parquet table root, one file per batch and run "
        "($JICOO_APPLY_LOG_ROOT).",
    )
    inbox: str = Field(
        default=DEFAULTS.changeset_inbox,
        description="The change-set inbox the sensor watches ($JICOO_CHANGESET_INBOX).",
    )


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


NO_CHANGE_IN_FLIGHT = dg.AssetCheckKey(APPLY_LOG_KEY, "no_change_in_flight")
# WARN: rows that did not go through are the user's to fix; the run itself did its job.
EVERY_ROW_WENT_THROUGH = dg.AssetCheckKey(APPLY_LOG_KEY, "every_row_went_through")


# A one-asset multi_asset: a dry run yields neither the asset nor its check, and only
# can_subset makes the check output optional.
def _observe_dry_run(context: dg.AssetExecutionContext, plan: Plan, plan_path: Path) -> None:
    counts = plan.counts()
    context.log.info(f"plan written to {plan_path}: {counts}")
    # A dry run changes nothing, so it is an observation, not a new apply_log.
    context.log_event(
        dg.AssetObservation(
            asset_key=APPLY_LOG_KEY,
            metadata={
                "jicoo/dry_run": True,
                "jicoo/plan_path": dg.MetadataValue.path(str(plan_path)),
                **{f"jicoo/plan/{verdict}": n for verdict, n in counts.items()},
            },
        )
    )


@dg.multi_asset(
    name=APPLY_LOG_OP,
    specs=[
        dg.AssetSpec(
            APPLY_LOG_KEY,
            group_name="jicoo",
            # The embedded default; apply_log_for() names the configured ledger's backend.
            kinds={*APPLY_LOG_KINDS, ledger_kind(DEFAULTS.ledger_path)},
            skippable=True,
            description="One row per change per write-back run: before, target, after, state, "
            "reason. A dry run records an observation with the plan's counts instead.",
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(NO_CHANGE_IN_FLIGHT.name, asset=APPLY_LOG_KEY),
        dg.AssetCheckSpec(
            EVERY_ROW_WENT_THROUGH.name,
            asset=APPLY_LOG_KEY,
            description="Every row of the change set ended applied or already in target. "
            "Fails (WARN) when rows were rejected, refused or failed: they are in the "
            "metadata's jicoo/rejected_path, to fix in place and resubmit as is.",
        ),
    ],
    can_subset=True,
    # Write-back spends the same account's requests as the extracts.
    pool=API_POOL,
)
def apply_log(
    context: dg.AssetExecutionContext,
    config: ApplyChangesetConfig,
    jicoo: JicooResource,
    writeback: WriteBackResource,
) -> Iterator[dg.MaterializeResult[None]]:
    run = run_changeset(
        jicoo.settings(),
        config.path,
        ledger=writeback.ledger_location(),
        apply_log_root=writeback.apply_log_root,
        batch_id=config.batch_id,
        dry_run=config.dry_run,
        concurrency=config.concurrency,
        encoding=config.encoding,
        strict=config.strict,
    )
    if run.rejected_path is not None:
        context.log.warning(
            f"{len(run.not_done)} rows did not go through; their reasons are in {run.rejected_path}"
        )
    if run.plan is not None and run.plan_path is not None:
        _observe_dry_run(context, run.plan, run.plan_path)
        return
    report, out, batch_id = run.report, run.apply_log, run.batch_id
    if report is None or out is None:  # only a dry run has neither
        raise dg.DagsterInvariantViolationError("the apply returned no report")
    context.log.info(report.summary())
    with Ledger(writeback.ledger_location()) as ledger:
        ledger_counts = ledger.counts(batch_id)
        ledger_backend = ledger.backend
    checks = {
        NO_CHANGE_IN_FLIGHT: in_flight_check(batch_id, ledger_counts),
        EVERY_ROW_WENT_THROUGH: rows_check(len(report.rows), report.counts, run.rejected_path),
    }
    yield dg.MaterializeResult(
        asset_key=APPLY_LOG_KEY,
        metadata={
            "dagster/row_count": len(report.rows),
            "dagster/uri": str(out),
            "dagster/column_schema": column_schema(
                APPLY_LOG.schema, APPLY_LOG.column_descriptions()
            ),
            "jicoo/batch_id": batch_id,
            "jicoo/ledger": redact_location(writeback.ledger_location()),
            "jicoo/ledger_backend": ledger_backend,
            "jicoo/posts_sent": report.posts_sent,
            "jicoo/summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
            **{f"jicoo/state/{state}": n for state, n in report.counts.items()},
        },
        check_results=[
            result for key, result in checks.items() if key in context.selected_asset_check_keys
        ],
    )


def in_flight_check(batch_id: str, ledger_counts: Mapping[str, int]) -> dg.AssetCheckResult:
    """ERROR when changes of the batch are left sent without an answer (the next run reads
    them back before anything is resent)."""
    in_flight = sum(ledger_counts.get(state, 0) for state in IN_FLIGHT_STATES)
    return dg.AssetCheckResult(
        check_name=NO_CHANGE_IN_FLIGHT.name,
        asset_key=APPLY_LOG_KEY,
        passed=in_flight == 0,
        description=f"{in_flight} changes of batch {batch_id} left in intent/in doubt",
        metadata={"in_flight": in_flight},
    )


def rows_check(rows: int, counts: Mapping[str, int], rejected: Path | None) -> dg.AssetCheckResult:
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
        check_name=EVERY_ROW_WENT_THROUGH.name,
        asset_key=APPLY_LOG_KEY,
        passed=left == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{left} of {rows} rows did not go through"
        + (f"; fix them in {rejected} and resubmit it as is" if rejected else ""),
        metadata=metadata,
    )


def apply_log_for(ledger_location: str) -> dg.AssetsDefinition:
    """``apply_log`` with the kind of the ledger at ``ledger_location`` (the location the
    code location's WriteBackResource is built from): the UI shows which backend it writes."""
    kinds = {*APPLY_LOG_KINDS, ledger_kind(ledger_location)}
    return apply_log.map_asset_specs(lambda spec: spec.replace_attributes(kinds=kinds))


apply_changeset_job = dg.define_asset_job(
    "apply_changeset",
    selection=dg.AssetSelection.assets(APPLY_LOG_KEY),
    description="Validate, plan (dry_run) or apply a change-set CSV through the ledger.",
)


# What the asset writes next to a change set: never a new change set for the sensor.
OUTPUT_SUFFIXES = (".rejected.csv",)


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


def inbox_run_request(path: Path) -> dg.RunRequest:
    content_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    return dg.RunRequest(
        # The same content never starts twice; an edited file is a new batch.
        run_key=f"{path.name}:{content_hash}",
        run_config={
            "ops": {
                APPLY_LOG_OP: {
                    "config": {
                        # Absolute: the run may start in another working directory.
                        "path": str(path.resolve()),
                        "batch_id": f"{path.stem}-{content_hash[:12]}",
                        "encoding": inbox_encoding(path),
                    }
                }
            }
        },
    )


@dg.sensor(
    job=apply_changeset_job,
    minimum_interval_seconds=30,
    # Running by default: a CSV dropped in the inbox is a request to apply it, and a stopped
    # sensor would leave it waiting with no sign. `make dev` runs the daemon that ticks it.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Running by default: starts apply_changeset once per CSV content dropped in "
    "the change-set inbox (the writeback resource's inbox, $JICOO_CHANGESET_INBOX). Name a "
    "file <name>.cp932.csv to have it read as cp932 (any Python codec name works). Stop it "
    "in the UI, or with `dagster sensor stop changeset_inbox_sensor`, to apply by hand only.",
)
def changeset_inbox_sensor(
    context: dg.SensorEvaluationContext, writeback: WriteBackResource
) -> Iterator[dg.RunRequest]:
    for path in sorted(Path(writeback.inbox).glob("*.csv")):
        if path.name.endswith(OUTPUT_SUFFIXES):
            continue
        yield inbox_run_request(path)
