"""Ctrl-C and SIGTERM end every long `jicoo` command with 130 / 143 and one line that says what
was done, after a real point of progress; nothing half-written stays, nothing done is lost or
done twice (the re-run finishes the work)."""

import datetime as dt
import json
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from jicoo_connector.changes import Ledger, State
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import LOADS_TABLE
from jicoo_connector.webhooks import READY_LINE_PREFIX, SQLiteEventStore
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import sign
from tests.signals.support import (
    INTERRUPTED,
    environment,
    finish,
    interrupt,
    one_line,
    run,
    start,
    temp_files,
    wait_until,
)
from tests.support.checksums import parquet_checksum, postgres_checksum, scalar
from tests.support.writeback_data import all_posts, build_csv, effective_posts

SIGNALS = [signal.SIGINT, signal.SIGTERM]
EXTRACT_DAYS = 14
# Slow enough that a signal lands mid-run whatever the machine's load: each request waits.
LATENCY = {"latency_ms": 150}


def _written_since(root: Path, before: dict[Path, int]) -> list[Path]:
    return [p for p in root.rglob("data.parquet") if before.get(p) != p.stat().st_mtime_ns]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_an_interrupted_extract_says_what_it_wrote_and_the_rest_keeps_its_data(
    sig: signal.Signals, sandbox: SandboxServer, tmp_path: Path
) -> None:
    out = tmp_path / "wh"
    first_day = sandbox.store.anchor - dt.timedelta(days=EXTRACT_DAYS // 2)
    last_day = first_day + dt.timedelta(days=EXTRACT_DAYS - 1)
    args = ["extract", "--tables", "bookings", "booking_contacts", "--out", str(out), "--quiet"]
    args += ["--start", str(first_day), "--end", str(last_day)]
    env = environment(sandbox, tmp_path)
    assert run(*args, env=env, cwd=tmp_path).returncode == 0  # the data a user had before
    before = {path: path.stat().st_mtime_ns for path in out.rglob("data.parquet")}
    old = {path: path.read_bytes() for path in before}
    total = 2 * EXTRACT_DAYS
    assert len(before) == total

    sandbox.set_faults(LATENCY)
    # --full: every booking's contacts read again, one request each (minutes of work).
    child = start(*args, "--full", env=env | {"JICOO_RATE_LIMIT": "10"}, cwd=tmp_path)
    wait_until(lambda: bool(_written_since(out, before)), "a partition written", child)
    code, _, err = interrupt(child, sig)

    assert code == INTERRUPTED[sig]
    written = _written_since(out, before)
    assert 0 < len(written) < total
    assert one_line(err) == (
        f"jicoo: interrupted: {len(written)} of {total} partitions written; "
        "the others keep their previous data"
    )
    for path in before:
        assert pq.read_table(path).num_rows >= 0  # every file whole, old or new
        if path not in written:
            assert path.read_bytes() == old[path]
    assert temp_files(out, tmp_path / "tmp") == []


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.system_clock("the CLI refuses reschedule targets in the past by the system clock")
def test_an_interrupted_apply_says_how_many_changes_are_applied_and_the_rerun_finishes(
    sig: signal.Signals, system_sandbox: SandboxServer, tmp_path: Path, ledger_location: str
) -> None:
    sandbox = system_sandbox
    text, uids = build_csv(sandbox, reschedules=2, cancels=28)
    changes = tmp_path / "batch.csv"
    changes.write_text(text, encoding="utf-8")
    args = ["apply", str(changes), "--ledger", ledger_location]
    args += ["--apply-log", str(tmp_path / "log"), "--concurrency", "2"]
    env = environment(sandbox, tmp_path)
    sandbox.set_faults(LATENCY)
    child = start(*args, env=env, cwd=tmp_path)
    wait_until(lambda: all_posts(sandbox) >= 5, "five POSTs", child)
    code, out, err = interrupt(child, sig)

    assert code == INTERRUPTED[sig], out + err
    with Ledger(ledger_location, read_only=True) as ledger:  # as `jicoo ledger status` reads it
        counts = ledger.counts("batch")
    applied = counts.get(State.APPLIED, 0)
    in_flight = counts.get(State.INTENT, 0) + counts.get(State.IN_DOUBT, 0)
    unanswered = f", {in_flight} sent without an answer (the re-run reads them back first)"
    assert one_line(err) == (
        f"jicoo: interrupted: {applied} of {len(uids)} changes applied and recorded"
        f"{unanswered if in_flight else ''}; re-run the same command to finish"
    )
    assert 5 <= applied + in_flight < len(uids)
    # What the ledger says applied is what the API took; in flight ones may have taken effect.
    assert applied <= sum(effective_posts(sandbox).values()) <= applied + in_flight
    assert temp_files(tmp_path) == []

    sandbox.set_faults({})
    rerun = run(*args, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert effective_posts(sandbox) == Counter(uids)  # every change once: none lost, none twice


def _lock_waiters(url: str) -> int:
    return int(str(scalar(url, "SELECT count(*) FROM pg_locks WHERE NOT granted")))


def test_an_interrupted_load_ends_after_the_table_in_hand(
    sandbox: SandboxServer, tmp_path: Path, postgres_url: str
) -> None:
    env = environment(sandbox, tmp_path)
    root = tmp_path / "wh"
    day = str(sandbox.store.anchor)
    extract = ["extract", "--tables", "bookings", "users", "--start", day, "--out", str(root)]
    assert run(*extract, "--quiet", env=env, cwd=tmp_path).returncode == 0
    load = ["load", "--warehouse-url", postgres_url, "--root", str(root)]
    assert run(*load, "--tables", "users", env=env, cwd=tmp_path).returncode == 0
    with psycopg.connect(postgres_url) as holder:
        # The loader's first table (bookings) waits for the load records until the commit.
        holder.execute(f"LOCK TABLE {LOADS_TABLE} IN SHARE MODE")
        child = start(*load, env=env, cwd=tmp_path)
        wait_until(lambda: _lock_waiters(postgres_url) > 0, "the loader in its merge", child)
        # Ctrl-C while the table's transaction is open: the load ends once it commits.
        child.send_signal(signal.SIGINT)
        holder.commit()
        code, out, err = finish(child)

    assert code == INTERRUPTED[signal.SIGINT]
    assert out.splitlines()[0].startswith("bookings ")
    assert one_line(err) == (
        "jicoo: interrupted: 1 of 7 tables loaded; the others keep their previous rows "
        "(re-run to finish)"
    )
    store = ParquetStore(root)
    assert postgres_checksum(postgres_url, "bookings") == parquet_checksum(store, "bookings")
    tables = f"SELECT count(DISTINCT table_name) FROM {LOADS_TABLE}"  # noqa: S608
    assert scalar(postgres_url, tables) == 2  # users (the first load), bookings: nothing else


def test_the_webhook_receiver_stops_on_sigterm_with_every_acknowledged_event_kept(
    tmp_path: Path,
) -> None:
    secret, db = "whsec_signals", tmp_path / "events.sqlite"
    env = environment(None, tmp_path, JICOO_WEBHOOK_SECRET=secret)
    child = start("webhook", "serve", "--port", "0", "--db", str(db), env=env, cwd=tmp_path)
    assert child.stdout is not None
    ready = child.stdout.readline()
    assert ready.startswith(READY_LINE_PREFIX), ready
    url = ready.removeprefix(READY_LINE_PREFIX).split()[0]
    body = json.dumps(
        {
            "event": "guest_booked",
            "createdAt": "2026-12-01T00:00:00.000Z",
            "object": {"uid": "sigtermBooking1", "startedAt": "2026-12-02T01:00:00.000Z"},
        }
    ).encode()
    stamp = int(time.time())
    answer = httpx.post(
        url,
        content=body,
        headers={"Jicoo-Webhook-Signature": sign(secret, body, stamp)},
        timeout=30,
    )
    assert answer.status_code == 200
    code, _, err = interrupt(child, signal.SIGTERM)

    assert code == INTERRUPTED[signal.SIGTERM]
    assert err.splitlines()[-1] == (
        f"jicoo: interrupted: the receiver stopped; every delivery answered 200 is in {db}"
    )
    assert "Traceback" not in err
    with SQLiteEventStore(db) as store:
        stored = [(s.event.event, s.event.booking_uid) for s in store.events_after(0, 10)]
    assert stored == [("guest_booked", "sigtermBooking1")]
