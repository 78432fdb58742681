"""The `jicoo` command's arguments: every command, flag and help text (cli.py runs them)."""

import argparse
from collections.abc import Callable
from pathlib import Path

from jicoo_connector.config import ConnectorConfig, parse_date, parse_zone

__all__ = ["DEFAULTS", "RECEIVER_FLAGS", "build_parser"]

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


def _add_load(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    load = commands.add_parser(
        "load",
        help="load the extracted Parquet tables into the warehouse (incremental)",
        description=(
            "Load the Parquet partitions written since their last load into the warehouse: "
            "a DuckDB file (default), postgresql://, snowflake:// or bigquery://PROJECT/DATASET. "
            "Each table is staged, then merged in one transaction; the load state lives in the "
            "warehouse's _jicoo_loads table. Exit 0 when every table loaded; 1 when the URL, "
            "driver, a column's type or another zone's days stop it after some tables loaded "
            "(they stay loaded); 2 when nothing was loaded. Ctrl-C takes effect between tables."
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


LEDGER_HELP = (
    f"ledger: an SQLite file or a postgresql:// URL (default: ${_SPECS['ledger_url'].env}, "
    f"else ${_SPECS['ledger_path'].env}, else {DEFAULTS.ledger_path})"
)


def _add_apply(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    apply = commands.add_parser(
        "apply",
        help="apply reschedules/cancellations from a CSV change set, exactly once",
        description=(
            "Validate a change-set CSV, then plan it (--dry-run) or apply it through the ledger. "
            "Exit 0: every row applied or already in target; 1: some rows rejected or failed "
            "(listed, and in FILE.rejected.csv, which can be fixed in place and applied as it "
            "is), or the ledger, the disk or the apply log failed after changes were sent "
            "(the message gives the counts); 2: nothing was sent (an unusable file, a refused "
            "key, a busy batch); 130/143: interrupted (the line says how many were applied)."
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


# `jicoo webhook serve` flags for the receiver's bounds: (flag, setting, what it bounds).
RECEIVER_FLAGS: tuple[tuple[str, str, str], ...] = (
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
    for flag, name, what in RECEIVER_FLAGS:
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
            "JICOO_REQUEST_DEADLINE bounds each request (seconds, default 60). Exit codes: 0 "
            "done; 1 done in part; 2 nothing done (usage, configuration, refused before any "
            "side effect); 130/143 interrupted by SIGINT/SIGTERM, with one line saying what "
            "was done."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_extract(commands)
    _add_load(commands)
    _add_apply(commands)
    _add_webhook(commands)
    return parser
