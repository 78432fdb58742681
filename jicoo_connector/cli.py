"""The `jicoo` command: extract, load, plan, apply, ledger, webhook serve.

The only module that prints.
"""

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from jicoo_connector.changes.ledger_backends import (
    is_postgres_url,
    redact_location,
    resolve_ledger_location,
)
from jicoo_connector.errors import ChangeSetError, ExtractError, JicooError

__all__ = ["main"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_UNUSABLE = 2
# The receiver's server, an optional extra: a user who only extracts never installs it.
WEBHOOKS_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def _add_tables(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--tables",
        nargs="+",
        metavar="TABLE",
        help=(
            f"tables to {verb} (default: all): bookings booking_contacts schedules "
            "availability_calendars available_slots event_types users"
        ),
    )


def _add_extract(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    extract = commands.add_parser(
        "extract",
        help="extract tables to Parquet (no Dagster needed)",
        description=(
            "Extract Jicoo tables into hive-partitioned Parquet: day tables for every day in "
            "[--start, --end] (calendar days in --timezone), snapshot tables once for today."
        ),
    )
    _add_tables(extract, "extract")
    extract.add_argument("--start", type=_date, default=None, help="first day (default today)")
    extract.add_argument("--end", type=_date, default=None, help="last day (default --start)")
    extract.add_argument("--out", default="data/warehouse", help="Parquet root: a path or URI")
    extract.add_argument("--timezone", default="Asia/Tokyo", help="IANA zone of the days")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument(
        "--full",
        action="store_true",
        help="read every booking's contacts (default: only new or changed bookings')",
    )


def _extract(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jicoo_connector.extract import SOURCES, ExtractResult, extract_range
    from jicoo_connector.settings import Settings
    from jicoo_connector.tables import TABLES

    tables = args.tables or sorted(SOURCES)
    unknown = sorted(set(tables) - set(SOURCES))
    if unknown:
        print(f"jicoo extract: unknown tables {unknown}; known: {sorted(SOURCES)}", file=sys.stderr)
        return EXIT_UNUSABLE
    settings = Settings.from_env()
    start = args.start or dt.datetime.now(ZoneInfo(args.timezone)).date()
    end = args.end or start
    if end < start:
        raise SystemExit(f"jicoo extract: --end {end} is before --start {start}")
    days = (end - start).days + 1
    total = sum(days if TABLES[t].partitioning == "day" else 1 for t in tables)
    rows: dict[str, int] = {}
    with tqdm(total=total, unit="partition", disable=args.quiet, file=sys.stderr) as bar:

        def progress(result: ExtractResult) -> None:
            rows[result.table] = rows.get(result.table, 0) + result.rows
            if result.skipped_reason:
                bar.write(f"skipped {result.table}: {result.skipped_reason}")
            bar.set_postfix_str(f"{result.table} {result.partition_value}: {result.rows} rows")
            bar.update()

        extract_range(
            settings, tables, start, end, args.out, progress, zone=args.timezone, full=args.full
        )
    for table in tables:
        print(f"{table:<24} {rows.get(table, 0):>9} rows  {args.out}/{table}/")
    return EXIT_OK


DEFAULT_WAREHOUSE_ROOT = "data/warehouse"


def _add_load(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    load = commands.add_parser(
        "load",
        help="load the extracted Parquet tables into the warehouse (incremental)",
        description=(
            "Load the Parquet partitions written since their last load into the warehouse: "
            "a DuckDB file (default), postgresql://, snowflake:// or bigquery://PROJECT/DATASET. "
            "Each table is staged, then merged in one transaction; the load state lives in the "
            "warehouse's _jicoo_loads table. Exit 0 when every table loaded, 2 when the URL, "
            "driver or a column's type stops the load (tables before it stay loaded)."
        ),
        epilog=(
            "Credentials: in the URL, or JICOO_WAREHOUSE_PASSWORD (libpq's PGPASSWORD and "
            "~/.pgpass work too; BigQuery uses Google's application default credentials). "
            "The password is never printed."
        ),
    )
    _add_tables(load, "load")
    load.add_argument("--full", action="store_true", help="reload every partition, changed or not")
    load.add_argument(
        "--warehouse-url",
        default=None,
        metavar="URL",
        help="default: JICOO_WAREHOUSE_URL, else JICOO_DUCKDB_PATH, else data/warehouse.duckdb",
    )
    load.add_argument(
        "--root",
        default=None,
        help="Parquet root: a path or URI (default: JICOO_WAREHOUSE_ROOT, else data/warehouse)",
    )


def _load(args: argparse.Namespace) -> int:
    import os
    import uuid

    from jicoo_connector.storage import ParquetStore
    from jicoo_connector.warehouse import TableLoad, load_warehouse, warehouse_url_from_env

    url = args.warehouse_url or warehouse_url_from_env()
    root = args.root or os.environ.get("JICOO_WAREHOUSE_ROOT") or DEFAULT_WAREHOUSE_ROOT

    def progress(table: TableLoad) -> None:
        added = f", columns added: {', '.join(table.columns_added)}" if table.columns_added else ""
        print(
            f"{table.table:<24} {len(table.loaded):>4} partitions loaded ({table.rows} rows), "
            f"{len(table.skipped)} unchanged; {table.total_rows} rows in the warehouse{added}",
            flush=True,
        )

    report = load_warehouse(
        url,
        ParquetStore(root),
        tables=args.tables,
        full=args.full,
        run_id=f"cli-{uuid.uuid4().hex[:12]}",
        progress=progress,
    )
    print(report.summary())
    if not report.loaded and not report.skipped:
        print(
            f"jicoo load: no Parquet partitions under {root} (run jicoo extract first?)",
            file=sys.stderr,
        )
    return EXIT_OK


LEDGER_HELP = (
    "ledger: an SQLite file or a postgresql:// URL "
    "(default: $JICOO_LEDGER_URL, else data/ledger.sqlite)"
)
DEFAULT_APPLY_LOG_ROOT = "data/apply_log"
# Final states a row may end in for `jicoo apply` to exit 0.
SUCCESS_STATES = frozenset({"applied", "already_applied", "will_apply", "already_in_target"})


def _add_apply(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    apply = commands.add_parser(
        "apply",
        help="apply reschedules/cancellations from a CSV change set, exactly once",
        description=(
            "Validate a change-set CSV, then plan it (--dry-run) or apply it through the ledger. "
            "Exit 0: every row applied or already in target; 1: some rows rejected or failed "
            "(the report says which); 2: the file is unusable (nothing applied)."
        ),
    )
    apply.add_argument("file", type=Path, help="the change-set CSV")
    apply.add_argument("--dry-run", action="store_true", help="plan only; writes FILE.plan.json")
    apply.add_argument("--plan", type=Path, help="apply only if this plan still holds")
    apply.add_argument("--ledger", help=LEDGER_HELP)
    apply.add_argument("--concurrency", type=int, default=4, help="changes in flight at once")
    apply.add_argument("--batch-id", help="ledger batch id (default: the file name)")
    apply.add_argument("--encoding", help="file encoding, e.g. cp932 (default UTF-8)")
    apply.add_argument("--strict", action="store_true", help="refuse the file if any row is bad")
    apply.add_argument(
        "--apply-log", default=DEFAULT_APPLY_LOG_ROOT, help="apply_log Parquet table root"
    )

    ledger = commands.add_parser("ledger", help="inspect the write-back ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    undo = ledger_commands.add_parser(
        "undo", help="write the inverse change set of a batch's applied reschedules"
    )
    undo.add_argument("batch", help="the batch id")
    undo.add_argument("--ledger", help=LEDGER_HELP)
    undo.add_argument("--out", type=Path, help="output CSV (default BATCH.undo.csv)")
    status = ledger_commands.add_parser("status", help="counts per state of a batch")
    status.add_argument("batch", help="the batch id")
    status.add_argument("--ledger", help=LEDGER_HELP)


def _apply(args: argparse.Namespace) -> int:
    from jicoo_connector.changes import (
        Plan,
        apply_changeset,
        build_plan,
        parse_changeset,
        write_rejected_csv,
    )
    from jicoo_connector.settings import Settings

    path: Path = args.file
    try:
        parsed = parse_changeset(path, encoding=args.encoding, strict=args.strict)
    except ChangeSetError as exc:
        print(f"jicoo apply: {path}: {exc} (nothing applied)", file=sys.stderr)
        return EXIT_UNUSABLE
    settings = Settings.from_env()
    if parsed.rejected:
        rejected = path.with_name(f"{path.stem}.rejected.csv")
        write_rejected_csv(rejected, parsed)
        print(f"{len(parsed.rejected)} rows rejected; fix and resubmit {rejected}:")
        for row in parsed.rejected:
            print(f"  row {row.row}, column {row.column or '-'}: {row.reason}")
    if args.dry_run:
        dry = build_plan(settings, parsed, concurrency=args.concurrency)
        plan_path = dry.write(path.with_name(f"{path.stem}.plan.json"))
        print(f"plan {plan_path}: " + ", ".join(f"{k} {n}" for k, n in dry.counts().items()))
        for item in dry.items:
            if item.verdict.value not in SUCCESS_STATES:
                print(f"  row {item.row}: {item.verdict.value}: {item.reason}")
        ok = all(item.verdict.value in SUCCESS_STATES for item in dry.items)
        return EXIT_OK if ok and not parsed.rejected else EXIT_SOME_FAILED
    plan = Plan.read(args.plan) if args.plan else None
    batch_id = args.batch_id or path.stem
    location = resolve_ledger_location(args.ledger)
    report = apply_changeset(
        settings,
        parsed,
        ledger_location=location,
        batch_id=batch_id,
        plan=plan,
        concurrency=args.concurrency,
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log = report.write_parquet(Path(args.apply_log) / f"batch={batch_id}" / f"run-{stamp}.parquet")
    print(report.summary())
    print(f"apply log: {log}; ledger: {redact_location(location)}")
    ok = all(row.state in SUCCESS_STATES for row in report.rows)
    return EXIT_OK if ok and not parsed.rejected else EXIT_SOME_FAILED


def _ledger(args: argparse.Namespace) -> int:
    from jicoo_connector.changes import Ledger

    location = resolve_ledger_location(args.ledger)
    if not is_postgres_url(location) and not Path(location).exists():
        print(f"jicoo ledger: no ledger at {location}", file=sys.stderr)
        return EXIT_UNUSABLE
    with Ledger(location) as ledger:
        holder = ledger.batch_holder(args.batch)
        if holder is None:
            print(f"jicoo ledger: no batch {args.batch!r} in {ledger.where}", file=sys.stderr)
            return EXIT_UNUSABLE
        if args.ledger_command == "status":
            print(
                f"ledger {ledger.where} ({ledger.backend}, schema version {ledger.schema_version})"
            )
            epoch, by, since = holder
            if by:
                print(f"batch {args.batch}: taken {epoch} times, last by {by} at {since}")
            for state, count in sorted(ledger.counts(args.batch).items()):
                print(f"{state:<16} {count:>6}")
            return EXIT_OK
        rows = ledger.export_inverse(args.batch)
    out: Path = args.out or Path(f"{args.batch}.undo.csv")
    columns = ["change_id", "action", "booking_uid", "new_started_at", "time_zone", "cancel_reason"]
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} reschedules to undo written to {out} (apply it with: jicoo apply {out})")
    return EXIT_OK


def _add_webhook(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from jicoo_connector.webhooks import DEFAULT_EVENTS_DB, EVENTS_DB_ENV, SECRET_ENV

    webhook = commands.add_parser("webhook", help="receive Jicoo booking webhooks")
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True)
    serve = webhook_commands.add_parser(
        "serve",
        help="serve the webhook receiver until interrupted; prints its URL first",
        description=(
            "Verify, deduplicate and durably record Jicoo webhook deliveries (POST to any path). "
            f"Secrets: {SECRET_ENV} (comma-separated during a rotation), never an argument."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one")
    serve.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"SQLite event store (default ${EVENTS_DB_ENV} or {DEFAULT_EVENTS_DB})",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=None, help="larger bodies get 413 (256 KiB)"
    )


def _serve_webhooks(args: argparse.Namespace) -> int:
    import logging

    from jicoo_connector.webhooks import SQLiteEventStore, WebhookSecrets, events_db_path

    try:
        from jicoo_connector.webhooks.receiver import (
            DEFAULT_MAX_BODY_BYTES,
            READY_LINE_PREFIX,
            serve,
        )
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in WEBHOOKS_EXTRA_MODULES:
            raise
        raise SystemExit(
            f"jicoo webhook serve needs {missing}, which comes with the webhooks extra: "
            "pip install 'jicoo-connector[webhooks]'"
        ) from None

    secrets = WebhookSecrets.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    db: Path = args.db or events_db_path()
    with SQLiteEventStore(db) as store:

        def announce(url: str) -> None:
            print(f"{READY_LINE_PREFIX}{url} (events in {db})", flush=True)

        serve(
            store,
            secrets,
            host=args.host,
            port=args.port,
            on_ready=announce,
            max_body_bytes=args.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jicoo",
        description=(
            "Jicoo connector: extract to Parquet, load the warehouse, apply change sets, "
            "receive webhooks."
        ),
        epilog=(
            "The API key is read from JICOO_API_KEY, the base URL from JICOO_BASE_URL. "
            "Network: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY as curl reads them, or "
            "JICOO_PROXY_URL to override; TLS trusts certifi's bundle, JICOO_CA_BUNDLE (a PEM "
            "file) or, with JICOO_TLS_TRUST=system, the operating system's store; "
            "JICOO_REQUEST_DEADLINE bounds each request (seconds, default 60). "
            "Every setting: the README's Settings table."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_extract(commands)
    _add_load(commands)
    _add_apply(commands)
    _add_webhook(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "extract":
            return _extract(args)
        if args.command == "load":
            return _load(args)
        if args.command == "apply":
            return _apply(args)
        if args.command == "ledger":
            return _ledger(args)
        if args.command == "webhook":
            return _serve_webhooks(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except ExtractError as group:
        # extract_range attempts every partition and raises the failures together.
        for failure in group.exceptions:
            notes = "; ".join(getattr(failure, "__notes__", []))
            print(f"jicoo: {type(failure).__name__}: {failure} ({notes})", file=sys.stderr)
        return EXIT_SOME_FAILED
    except JicooError as exc:
        print(f"jicoo: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
