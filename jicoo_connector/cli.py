"""The `jicoo` command: extract, load, plan, apply, ledger, webhook serve.

The only module that prints.
"""

import argparse
import contextlib
import csv
import datetime as dt
import socket
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jicoo_connector.atomic import atomic_path
from jicoo_connector.config import (
    ConnectorConfig,
    organization_name,
    organization_variable,
    parse_date,
    parse_zone,
    read_organization_variable,
)
from jicoo_connector.errors import (
    ApplyIncompleteError,
    BatchMismatchError,
    ChangeSetError,
    ConfigError,
    ExtractError,
    JicooError,
    LedgerBusyError,
    PlanError,
)
from jicoo_connector.redaction import redact_location

if TYPE_CHECKING:
    from jicoo_connector.webhooks import EventStore, WebhookEndpoint

__all__ = ["main"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_UNUSABLE = 2
# The receiver's server, an optional extra: a user who only extracts never installs it.
WEBHOOKS_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})


DEFAULTS = ConnectorConfig()
_SPECS = ConnectorConfig.specs()


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A config parser as an argparse type: a bad flag is a usage error (exit 2), no stack."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_date = _argument(parse_date)
_zone = _argument(parse_zone)


def _setting_help(name: str, what: str) -> str:
    """``what`` plus where the default comes from: the variable, else the built-in value."""
    env = _SPECS[name].env
    return f"{what} (default: ${env}, else {getattr(DEFAULTS, name)})"


class _TableNames:
    """The registry's table names, read only when shown: importing the registry imports the
    extractor and pyarrow, which commands that never touch a table should not pay for."""

    def __str__(self) -> str:
        from jicoo_connector.extract import TABLES

        return " ".join(TABLES)


def _add_tables(parser: argparse.ArgumentParser, verb: str) -> None:
    action = parser.add_argument(
        "--tables",
        nargs="+",
        metavar="TABLE",
        help=f"tables to {verb} (default: all): %(known)s",
    )
    # argparse fills %(known)s from the action's attributes when it formats the help.
    action.known = _TableNames()  # type: ignore[attr-defined]


def _usage(message: str) -> int:
    print(f"jicoo: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def _port_free(host: str, port: int) -> bool:
    # Checked before serving, so the mistake is told at once and plainly.
    if port == 0:
        return True
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


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
    extract.add_argument(
        "--out", default=None, help=_setting_help("warehouse_root", "Parquet root: a path or URI")
    )
    extract.add_argument(
        "--timezone",
        type=_zone,
        default=None,
        help=_setting_help("timezone", "IANA zone of the days"),
    )
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument(
        "--full",
        action="store_true",
        help="read every booking's contacts (default: only new or changed bookings')",
    )


def _progress_bar(total: int, *, quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """The extract's progress bar on stderr; with --quiet none (and no import of tqdm)."""
    if quiet:
        return contextlib.nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, unit="partition", file=sys.stderr)


def _extract(args: argparse.Namespace) -> int:
    from jicoo_connector.extract import TABLES, ExtractResult, extract_range

    tables = args.tables or sorted(TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        print(f"jicoo extract: unknown tables {unknown}; known: {sorted(TABLES)}", file=sys.stderr)
        return EXIT_UNUSABLE
    config = ConnectorConfig.from_env(timezone=args.timezone, warehouse_root=args.out)
    settings = config.settings()
    start = args.start or dt.datetime.now(ZoneInfo(config.timezone)).date()
    end = args.end or start
    if end < start:
        return _usage(f"extract: --end {end} is before --start {start}")
    days = (end - start).days + 1
    total = sum(days if TABLES[t].spec.partitioning == "day" else 1 for t in tables)
    rows: dict[str, int] = {}
    with _progress_bar(total, quiet=args.quiet) as bar:

        def progress(result: ExtractResult) -> None:
            rows[result.table] = rows.get(result.table, 0) + result.rows
            if result.skipped_reason:
                (print if bar is None else bar.write)(
                    f"skipped {result.table}: {result.skipped_reason}"
                )
            if bar is not None:
                bar.set_postfix_str(f"{result.table} {result.partition_value}: {result.rows} rows")
                bar.update()

        extract_range(
            settings,
            tables,
            start,
            end,
            config.warehouse_root,
            progress,
            zone=config.timezone,
            full=args.full,
        )
    for table in tables:
        print(f"{table:<24} {rows.get(table, 0):>9} rows  {config.warehouse_root}/{table}/")
    return EXIT_OK


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
        help=f"warehouse (default: $JICOO_WAREHOUSE_URL, else $JICOO_DUCKDB_PATH, else "
        f"{DEFAULTS.duckdb_path})",
    )
    load.add_argument(
        "--root",
        default=None,
        help=_setting_help("warehouse_root", "Parquet root: a path or URI"),
    )


def _load(args: argparse.Namespace) -> int:
    import uuid

    from jicoo_connector.storage import ParquetStore
    from jicoo_connector.warehouse import TableLoad, WarehouseTarget, load_warehouse

    config = ConnectorConfig.from_env(warehouse_url=args.warehouse_url, warehouse_root=args.root)
    target = WarehouseTarget.parse(config.warehouse(), password=config.warehouse_password)
    root = config.warehouse_root

    def progress(table: TableLoad) -> None:
        added = f", columns added: {', '.join(table.columns_added)}" if table.columns_added else ""
        print(
            f"{table.table:<24} {len(table.loaded):>4} partitions loaded ({table.rows} rows), "
            f"{len(table.skipped)} unchanged; {table.total_rows} rows in the warehouse{added}",
            flush=True,
        )

    report = load_warehouse(
        target,
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
    f"ledger: an SQLite file or a postgresql:// URL (default: ${_SPECS['ledger_url'].env}, "
    f"else ${_SPECS['ledger_path'].env}, else {DEFAULTS.ledger_path})"
)


def _ledger_location(flag: str | None) -> str:
    """``--ledger`` (a file or a URL) beats ``JICOO_LEDGER_URL``, which beats the file setting."""
    return flag or ConnectorConfig.from_env().ledger_location()


def _add_apply(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    apply = commands.add_parser(
        "apply",
        help="apply reschedules/cancellations from a CSV change set, exactly once",
        description=(
            "Validate a change-set CSV, then plan it (--dry-run) or apply it through the ledger. "
            "Exit 0: every row applied or already in target; 1: some rows rejected or failed "
            "(the report says which), or the ledger, the disk or the apply log failed after "
            "changes were sent (the message gives the counts); 2: the file is unusable "
            "(nothing applied)."
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
        "--apply-log",
        default=None,
        help=_setting_help("apply_log_root", "apply_log Parquet table root"),
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
    from jicoo_connector.changes import run_changeset

    config = ConnectorConfig.from_env(apply_log_root=args.apply_log)
    location = _ledger_location(args.ledger)
    path: Path = args.file
    try:
        run = run_changeset(
            config.settings(),
            path,
            ledger=location,
            apply_log_root=config.apply_log_root,
            batch_id=args.batch_id,
            dry_run=args.dry_run,
            plan_path=args.plan,
            concurrency=args.concurrency,
            encoding=args.encoding,
            strict=args.strict,
        )
    except ChangeSetError as exc:
        return _usage(f"apply: {path}: {exc} (nothing applied)")
    except (PlanError, BatchMismatchError, LedgerBusyError) as exc:
        # All three are found before the first request of the batch leaves.
        return _usage(f"apply: {exc} (nothing was sent)")
    except ApplyIncompleteError as exc:
        # POSTs left before the ledger, the disk or the apply log failed: partly done.
        print(f"jicoo: apply: {path}: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if run.parsed.rejected:
        print(f"{len(run.parsed.rejected)} rows rejected by validation:")
        for row in run.parsed.rejected:
            print(f"  row {row.row}, column {row.column or '-'}: {row.reason}")
    if run.plan is not None:
        counts = ", ".join(f"{k} {n}" for k, n in run.plan.counts().items())
        print(f"plan {run.plan_path}: {counts} (nothing was sent)")
        for item in run.plan.items:
            if item.key is not None and item.refused:
                print(f"  row {item.row}: {item.verdict.value}: {item.reason}")
    if run.report is not None:
        print(run.report.summary())
        print(f"apply log: {run.apply_log}; ledger: {redact_location(location)}")
        if run.report.key_refused and not run.report.posts_sent:
            return _usage("apply: the API refused JICOO_API_KEY (HTTP 401); nothing was sent")
    if run.rejected_path is not None:
        print(f"{len(run.not_done)} rows did not go through; fix and resubmit {run.rejected_path}")
    return EXIT_OK if run.ok else EXIT_SOME_FAILED


def _ledger(args: argparse.Namespace) -> int:
    from jicoo_connector.changes import Ledger

    location = _ledger_location(args.ledger)
    # Read-only: a location without a ledger is reported (LedgerNotFoundError, exit 2), not
    # given an empty one.
    with Ledger(location, read_only=True) as ledger:
        holder = ledger.batch_holder(args.batch)
        if holder is None:
            return _usage(f"ledger: no batch {args.batch!r} in {ledger.where}")
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
    with atomic_path(out) as temp, temp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} reschedules to undo written to {out} (apply it with: jicoo apply {out})")
    return EXIT_OK


# `jicoo webhook serve` flags for the receiver's bounds: (flag, setting, what it bounds).
_RECEIVER_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--max-connections", "webhook_max_connections", "open connections; past it the oldest "
     "one still sending its request is closed"),
    ("--max-header-bytes", "webhook_max_header_bytes", "request line and headers (400)"),
    ("--max-headers", "webhook_max_headers", "header fields (431)"),
    ("--header-timeout", "webhook_header_timeout_s", "seconds for a request's head"),
    ("--body-timeout", "webhook_body_timeout_s", "seconds for its body (408)"),
    ("--keep-alive", "webhook_keep_alive_s", "seconds an idle connection is kept"),
    ("--max-body-bytes", "webhook_max_body_bytes", "body bytes (413)"),
)  # fmt: skip


def _add_webhook(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    webhook = commands.add_parser("webhook", help="receive Jicoo booking webhooks")
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True)
    serve = webhook_commands.add_parser(
        "serve",
        help="serve the webhook receiver until interrupted; prints its URL first",
        description=(
            "Verify, deduplicate and durably record Jicoo webhook deliveries (POST to any path). "
            f"Secrets: ${_SPECS['webhook_secret'].env} (comma-separated during a rotation), "
            "never an argument; with --organization, each organization's own variable."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one")
    serve.add_argument(
        "--db",
        default=None,
        help="event store: an SQLite file or a postgresql:// URL (default: "
        f"${_SPECS['webhook_db_url'].env}, else ${_SPECS['webhook_db'].env}, "
        f"else {DEFAULTS.webhook_db})",
    )
    for flag, name, what in _RECEIVER_FLAGS:
        # The setting's own parser: a flag is checked as its variable is.
        check = _SPECS[name].parse
        serve.add_argument(flag, type=check, default=None, help=_setting_help(name, what))
    serve.add_argument(
        "--organization",
        action="append",
        metavar="NAME=DB",
        default=None,
        help="serve this organization at /NAME, its events in the SQLite file DB, its secrets "
        "in $<NAME>_JICOO_WEBHOOK_SECRET (upper case); repeat for each organization. A POST to "
        "another path goes to the organization whose secret signed it. Not with --db.",
    )


def _opened(location: str, stack: ExitStack) -> "EventStore":
    """The event store at ``location`` (an SQLite file or a postgresql:// URL), closed with
    ``stack``."""
    from jicoo_connector.webhooks import open_event_store

    store = open_event_store(location)
    stack.callback(store.close)
    return store


def _organization_endpoint(spec: str, stack: ExitStack) -> tuple["WebhookEndpoint", str]:
    """``acme=data/jicoo/acme/webhook_events.sqlite`` (or a postgresql:// URL) -> acme's
    endpoint, its secrets from ``ACME_JICOO_WEBHOOK_SECRET``."""
    from jicoo_connector.webhooks import WebhookEndpoint, WebhookSecrets

    name, sep, db = spec.partition("=")
    if not sep or not db.strip():
        raise ConfigError(
            f"--organization {spec!r}: expected NAME=DB (acme=data/acme/events.sqlite)"
        )
    name = organization_name(name, f"--organization {spec!r}")
    variable = organization_variable(name, _SPECS["webhook_secret"].env)
    secret = read_organization_variable(name, _SPECS["webhook_secret"].env)
    if secret is None:
        raise ConfigError(f"{variable} is not set: the webhook secret of organization {name}")
    location = db.strip()
    return WebhookEndpoint(name, _opened(location, stack), WebhookSecrets.parse(secret)), location


def _webhook_endpoints(
    args: argparse.Namespace, stack: ExitStack
) -> list[tuple["WebhookEndpoint", str]]:
    """The endpoints to serve, each with its event store's location."""
    from jicoo_connector.webhooks import DEFAULT_ENDPOINT, WebhookEndpoint, WebhookSecrets

    if args.organization:
        if args.db is not None:
            raise ConfigError("--db is for one organization; with --organization give NAME=DB")
        return [_organization_endpoint(spec, stack) for spec in args.organization]
    config = ConnectorConfig.from_env()
    try:
        secrets = WebhookSecrets.parse(config.webhook_secret or "")
    except ConfigError as exc:
        raise ConfigError(f"webhook serve: {exc}: set {_SPECS['webhook_secret'].env}") from None
    location = args.db or config.webhook_store()
    return [(WebhookEndpoint(DEFAULT_ENDPOINT, _opened(location, stack), secrets), location)]


def _serve_webhooks(args: argparse.Namespace) -> int:
    import logging

    try:
        from jicoo_connector.webhooks import READY_LINE_PREFIX, serve
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in WEBHOOKS_EXTRA_MODULES:
            raise
        raise SystemExit(
            f"jicoo webhook serve needs {missing}, which comes with the webhooks extra: "
            "pip install 'jicoo-connector[webhooks]'"
        ) from None

    flags = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _ in _RECEIVER_FLAGS}
    limits = ConnectorConfig.from_env(**flags).receiver_limits()
    if not _port_free(args.host, args.port):
        return _usage(f"port {args.port} on {args.host} is in use; pick another (--port 0: any)")
    with ExitStack() as stack:
        served = _webhook_endpoints(args, stack)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        where = (
            redact_location(served[0][1])
            if not args.organization
            else ", ".join(f"{e.name} in {redact_location(at)}" for e, at in served)
        )

        def announce(url: str) -> None:
            print(f"{READY_LINE_PREFIX}{url} (events in {where})", flush=True)

        serve(
            [endpoint for endpoint, _ in served],
            host=args.host,
            port=args.port,
            on_ready=announce,
            limits=limits,
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
            "Settings come from JICOO_* environment variables (the README's Settings table "
            "lists them); a flag beats its variable. The API key is read from JICOO_API_KEY "
            "only. Network: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY as curl reads them, or "
            "JICOO_PROXY_URL to override; TLS trusts certifi's bundle, JICOO_CA_BUNDLE (a PEM "
            "file) or, with JICOO_TLS_TRUST=system, the operating system's store; "
            "JICOO_REQUEST_DEADLINE bounds each request (seconds, default 60)."
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
    except JicooError as exc:  # ConfigError among them
        return _usage(str(exc))
    except OSError as exc:
        # A path the user gave that cannot be read or written: say which, no stack.
        where = f": {exc.filename}" if exc.filename else ""
        return _usage(f"{exc.strerror or exc}{where}")
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
