"""The `jicoo` command: extract, load, plan, apply, ledger, webhook serve.

The only module that prints.
"""

import argparse
import contextlib
import csv
import datetime as dt
import errno
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from jicoo_connector._cli_parser import RECEIVER_FLAGS, build_parser
from jicoo_connector.atomic import atomic_path
from jicoo_connector.config import (
    ConnectorConfig,
    organization_name,
    organization_variable,
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

__all__ = ["build_parser", "main"]

_T = TypeVar("_T")

# The exit codes (the README's table). 1 and 2 tell "done in part" from "nothing done": what
# a scheduler needs to know before it re-runs or pages someone.
EXIT_OK = 0  # done
EXIT_SOME_FAILED = 1  # done in part: some partitions, tables or rows did not go through
EXIT_UNUSABLE = 2  # nothing done: usage, configuration, refused before any side effect
EXIT_SIGINT = 128 + signal.SIGINT  # 130: interrupted (Ctrl-C)
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: interrupted (SIGTERM: kill, a scheduler's stop)
# The receiver's server, an optional extra: a user who only extracts never installs it.
WEBHOOKS_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})
_SECRET_ENV = ConnectorConfig.specs()["webhook_secret"].env


def _usage(message: str) -> int:
    print(f"jicoo: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


class _Done:
    """What a command has done so far: the line an interrupt or a failure ends with says it,
    and whether anything was done decides between exit 1 and 2."""

    def __init__(self) -> None:
        self.anything = False
        self.what: Callable[[], str] = lambda: "nothing was written"
        # The signals received (SIGINT, SIGTERM): the exit code of an interrupt.
        self.signals: list[int] = []


def _port_free(host: str, port: int) -> bool:
    # Checked before serving, so the mistake is told at once and plainly.
    if port == 0:
        return True
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def _progress_bar(total: int, *, quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """The extract's progress bar on stderr; with --quiet none (and no import of tqdm)."""
    if quiet:
        return contextlib.nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, unit="partition", file=sys.stderr)


def _extract(args: argparse.Namespace, done: _Done) -> int:
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
    skipped: dict[str, str] = {}
    written = 0
    done.what = lambda: (
        f"{written} of {total} partitions written; the others keep their previous data"
    )
    with _progress_bar(total, quiet=args.quiet) as bar:

        def progress(result: ExtractResult) -> None:
            nonlocal written
            rows[result.table] = rows.get(result.table, 0) + result.rows
            if result.skipped_reason:
                skipped[result.table] = result.skipped_reason
            else:
                written += 1
                done.anything = True
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
    return _extract_summary(tables, rows, skipped, config.warehouse_root)


def _extract_summary(
    tables: Sequence[str], rows: dict[str, int], skipped: dict[str, str], root: str
) -> int:
    for table in tables:
        if table in skipped:
            print(f"{table:<24} {'skipped':>9}       {skipped[table]}; earlier partitions kept")
        else:
            print(f"{table:<24} {rows.get(table, 0):>9} rows  {root}/{table}/")
    if not skipped:
        return EXIT_OK
    # The key reads bookings but not these: the rest is written, so this is done in part.
    print(
        f"jicoo extract: {len(skipped)} of {len(tables)} tables skipped: the API key may "
        "not read them (leave them out with --tables)",
        file=sys.stderr,
    )
    return EXIT_SOME_FAILED


def _load(args: argparse.Namespace, done: _Done) -> int:
    import uuid

    from jicoo_connector.extract import TABLES
    from jicoo_connector.storage import ParquetStore
    from jicoo_connector.warehouse import LoadReport, TableLoad, WarehouseTarget, load_warehouse

    config = ConnectorConfig.from_env(warehouse_url=args.warehouse_url, warehouse_root=args.root)
    target = WarehouseTarget.parse(config.warehouse(), password=config.warehouse_password)
    root = config.warehouse_root
    store = ParquetStore(root)
    if store.is_local and not Path(store.base).is_dir():
        # Said before the warehouse is opened: a DuckDB file would be created for nothing.
        return _usage(
            f"load: no Parquet folder at {root} (--root or JICOO_WAREHOUSE_ROOT): nothing was "
            "loaded; extract first (jicoo extract --out DIR)"
        )
    total = len(args.tables or TABLES)
    loaded: list[str] = []
    done.what = lambda: (
        f"{len(loaded)} of {total} tables loaded; the others keep their previous rows "
        "(re-run to finish)"
    )

    def progress(table: TableLoad) -> None:
        loaded.append(table.table)
        done.anything = True
        added = f", columns added: {', '.join(table.columns_added)}" if table.columns_added else ""
        print(
            f"{table.table:<24} {len(table.loaded):>4} partitions loaded ({table.rows} rows), "
            f"{len(table.skipped)} unchanged; {table.total_rows} rows in the warehouse{added}",
            flush=True,
        )

    def load(between_tables: Callable[[], None]) -> LoadReport:
        def reported(table: TableLoad) -> None:
            progress(table)
            between_tables()  # what is loaded is known exactly here

        return load_warehouse(
            target,
            store,
            tables=args.tables,
            full=args.full,
            run_id=f"cli-{uuid.uuid4().hex[:12]}",
            progress=reported,
        )

    report = _in_steps(done, load)
    print(report.summary())
    if not report.loaded and not report.skipped:
        return _usage(f"load: no Parquet partitions under {root} (run jicoo extract first?)")
    return EXIT_OK


def _ledger_location(flag: str | None) -> str:
    """``--ledger`` (a file or a URL) beats ``JICOO_LEDGER_URL``, which beats the file setting."""
    return flag or ConnectorConfig.from_env().ledger_location()


def _applied_so_far(location: str, batch: str, dry_run: bool) -> str:
    """What an interrupted apply did, as its ledger records it (read only, as `jicoo ledger
    status`): the batch's changes applied, and those sent without an answer."""
    from jicoo_connector.changes import Ledger, State

    if dry_run:
        return "a dry run sends nothing; no plan was written"
    try:
        with Ledger(location, read_only=True) as ledger:
            counts = ledger.counts(batch) if ledger.batch_holder(batch) else {}
    except JicooError as exc:
        return f"the ledger cannot be read ({exc}); re-run the same command to finish"
    if not counts:
        return "nothing was sent"
    applied = counts.get(State.APPLIED, 0) + counts.get(State.ALREADY_APPLIED, 0)
    line = f"{applied} of {sum(counts.values())} changes applied and recorded"
    in_flight = counts.get(State.INTENT, 0) + counts.get(State.IN_DOUBT, 0)
    if in_flight:
        line += f", {in_flight} sent without an answer (the re-run reads them back first)"
    return f"{line}; re-run the same command to finish"


def _apply(args: argparse.Namespace, done: _Done) -> int:
    from jicoo_connector.changes import default_batch_id, run_changeset

    config = ConnectorConfig.from_env(apply_log_root=args.apply_log)
    location = _ledger_location(args.ledger)
    path: Path = args.file
    batch = args.batch_id or default_batch_id(path)
    done.what = lambda: _applied_so_far(location, batch, args.dry_run)
    try:
        run = run_changeset(
            config.settings(),
            path,
            ledger=location,
            apply_log_root=config.apply_log_root,
            batch_id=batch,
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
            return _usage("apply: the API refused JICOO_API_KEY (HTTP 401/403); nothing was sent")
    if run.rejected_path is not None:
        print(f"{len(run.not_done)} rows did not go through; fix and resubmit {run.rejected_path}")
    return EXIT_OK if run.ok else EXIT_SOME_FAILED


def _ledger(args: argparse.Namespace, done: _Done) -> int:
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
    variable = organization_variable(name, _SECRET_ENV)
    secret = read_organization_variable(name, _SECRET_ENV)
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
        raise ConfigError(f"webhook serve: {exc}: set {_SECRET_ENV}") from None
    location = args.db or config.webhook_store()
    return [(WebhookEndpoint(DEFAULT_ENDPOINT, _opened(location, stack), secrets), location)]


def _serve_webhooks(args: argparse.Namespace, done: _Done) -> int:
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

    flags = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _ in RECEIVER_FLAGS}
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
        done.what = lambda: f"the receiver stopped; every delivery answered 200 is in {where}"

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


_COMMANDS: dict[str, Callable[[argparse.Namespace, _Done], int]] = {
    "extract": _extract,
    "load": _load,
    "apply": _apply,
    "ledger": _ledger,
    "webhook": _serve_webhooks,
}


@contextlib.contextmanager
def _sigterm_as_sigint(done: _Done) -> Iterator[None]:
    """SIGTERM stops a command the way Ctrl-C does: the same clean-up, one line saying what was
    done. Both are noted in ``done.signals`` for the exit code."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        done.signals.append(signum)
        # Whoever handles Ctrl-C now does the same: Python's default raises KeyboardInterrupt,
        # asyncio.run cancels its main task first (the run unwinds, then it raises).
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_steps(done: _Done, work: Callable[[Callable[[], None]], _T]) -> _T:
    """``work(check)`` in a thread of its own, where Ctrl-C or SIGTERM take effect at the next
    ``check()`` it makes between two steps (two tables' transactions): the line then says
    exactly what is done. A second signal stops at once. In that thread no database driver
    takes the signal over either (ADBC cancels the running statement on SIGINT)."""
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def check() -> None:
        if done.signals:
            raise KeyboardInterrupt

    def run() -> None:
        try:
            outcome.append(work(check))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
            failure.append(exc)

    def defer(signum: int, frame: FrameType | None) -> None:
        done.signals.append(signum)
        if len(done.signals) > 1:
            raise KeyboardInterrupt

    # A daemon: after a second signal the process ends without waiting for the step in hand
    # (its server rolls the open transaction back).
    worker = threading.Thread(target=run, name="jicoo-steps", daemon=True)
    previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        worker.join()  # interruptible: the handlers run while the main thread waits
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]
    return outcome[0]


def _fail(exc: BaseException, done: _Done) -> int:
    """The one way every command ends on an error or an interrupt: one line on stderr, no
    traceback, and the exit code of the README's table. Anything else is a bug: raised."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"jicoo: interrupted: {done.what()}", file=sys.stderr)
        return EXIT_SIGTERM if signal.SIGTERM in done.signals else EXIT_SIGINT
    if isinstance(exc, ApplyIncompleteError):
        # POSTs left before the ledger, the disk or the apply log failed: done in part. The
        # message has the counts and says whether a re-run is safe.
        print(f"jicoo: apply: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if isinstance(exc, ExtractError):
        # extract_range attempts every partition and raises the failures together; its
        # message says why and how many partitions were written.
        message = exc.message
    elif isinstance(exc, JicooError):  # ConfigError among them
        message = str(exc)
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        message = f"no space left on the device{where}: free some space or write elsewhere"
    elif isinstance(exc, OSError):
        # A path the user gave that cannot be read or written: say which.
        message = f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    else:
        raise exc
    if done.anything and not isinstance(exc, ExtractError):
        message += f"; {done.what()}"
    print(f"jicoo: {message}", file=sys.stderr)
    return EXIT_SOME_FAILED if done.anything else EXIT_UNUSABLE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The library logs what it does; the command prints its own lines (no log line doubles one).
    library = logging.getLogger("jicoo_connector")
    if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
        library.addHandler(logging.NullHandler())
    done = _Done()
    with _sigterm_as_sigint(done):
        try:
            return _COMMANDS[args.command](args, done)
        except (KeyboardInterrupt, JicooError, OSError) as exc:
            return _fail(exc, done)


if __name__ == "__main__":
    sys.exit(main())
