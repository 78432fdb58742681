"""deploy/dagster.yaml for real on loopback: a PostgreSQL-backed instance, the daemon, a 14-day
backfill of bookings and contacts in several runs, a change set dropped in the inbox, Parquet on
S3 (moto), the ledger in PostgreSQL, and the sandbox holding the account to 10 requests/s.

Each run is launched by the daemon through the queue and ``DefaultRunLauncher``: its own
process, started by the code server, which the daemon starts in a working directory of its own
(not the test's, not the daemon's). What this proves: runs in separate processes agree only
through PostgreSQL and S3 (the instance, the run queue, the ledger, the Parquet root); nothing
is passed in memory. What it does not: other machines (one kernel, one clock, loopback only),
nor container or pod launchers (their configuration is only loaded, in
test_deploy_config.py). Slow tier.
"""

import datetime as dt
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.dagster_run import DagsterRunStatus

from jicoo_connector.changes import parse_changeset
from jicoo_connector.dagster import JicooNames
from jicoo_connector.settings import DEFAULT_BURST, DEFAULT_RATE_LIMIT
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import assert_one_at_a_time, step_spans
from tests.support.postgres_server import PostgresServer, dagster_url
from tests.support.s3_server import moto_s3
from tests.support.writeback_data import assert_server_matches, build_csv, effective_posts

# The code location's organization here (JICOO_ORGANIZATION), and so its names.
NAMES = JicooNames("scale")
CONTACTS_OP = NAMES.op("booking_contacts")

REPO = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
DEPLOY = REPO / "deploy"
ZONE = ZoneInfo("Asia/Tokyo")
BUCKET = "jicoo-lake"
BOOKINGS = NAMES.asset_key("bookings")
CONTACTS = NAMES.asset_key("booking_contacts")
BOOKINGS_OP = NAMES.op("bookings")  # the step of jicoo/scale/bookings
APPLY_LOG = NAMES.asset_key("apply_log")
APPLY_LOG_OP = NAMES.op("apply_log")
# 14 past days, clear of the change set (which moves and cancels future bookings only).
DAYS = 14
FIRST_DAY_BACK = 21
CHUNKS = ((0, 5), (5, 10), (10, 14))  # the backfill in three runs
RUNS = len(CHUNKS) + 1  # and the write-back run the sensor starts
# The account's budget, enforced by the sandbox: the connector's (and the documented sandbox's)
# 10 req/s with a burst of 20. Up to max_concurrent_runs (4) runs are in progress at once, each
# step its own process with its own limiter: only the organization's pool's one slot keeps them
# from sending several times the rate. The contacts (one request per booking) make the load
# big enough for that to show: with 8 slots instead of 1, 31 of 350 requests were answered 429.
RATE = DEFAULT_RATE_LIMIT
SANDBOX_LIMIT = {"rate_limit": {"rps": RATE, "burst": DEFAULT_BURST}}
MAX_429_SHARE = 0.02
RUNS_TIMEOUT_S = 240
POLL_S = 1.0


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with moto_s3(BUCKET) as (endpoint, _):
        yield endpoint


def _days() -> list[dt.date]:
    today = dt.datetime.now(ZONE).date()
    return [today - dt.timedelta(days=FIRST_DAY_BACK - i) for i in range(DAYS)]


def _expected_uids(sandbox: SandboxServer, day: dt.date) -> set[str]:
    found = set()
    for booking in sandbox.store.all_bookings():
        start = dt.datetime.fromisoformat(str(booking["startedAt"]).replace("Z", "+00:00"))
        if start.astimezone(ZONE).date() == day:
            found.add(str(booking["uid"]))
    return found


def _expected_contacts(sandbox: SandboxServer, day: dt.date) -> Counter[str]:
    """booking uid -> number of contacts, for the day's bookings that have any."""
    found: Counter[str] = Counter()
    for uid in _expected_uids(sandbox, day):
        found[uid] = len(sandbox.store.contacts(uid) or [])
    return +found


def _environment(
    sandbox: SandboxServer, home: Path, instance_url: str, ledger_url: str, s3: str
) -> dict[str, str]:
    host, port = s3.split(":")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_url(instance_url),
        "PYTHONPATH": str(REPO),
        "JICOO_ORGANIZATION": NAMES.organization,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_RATE_LIMIT": str(RATE),
        # The S3 endpoint in the URI, as for any S3-compatible store (MinIO, R2, ...).
        "JICOO_WAREHOUSE_ROOT": f"s3://{BUCKET}/warehouse?endpoint_override={host}:{port}"
        "&scheme=http",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "JICOO_LEDGER_URL": ledger_url,
        "JICOO_CHANGESET_INBOX": str(home.parent / "inbox"),
        "JICOO_APPLY_LOG_ROOT": str(home.parent / "apply_log"),
        "JICOO_DUCKDB_PATH": str(home.parent / "warehouse.duckdb"),
    }


def _workspace(where: Path) -> Path:
    code = where / "code-location"
    code.mkdir()
    path = where / "workspace.yaml"
    path.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: assets.definitions\n"
        f"      working_directory: {code}\n"
        "      location_name: jicoo\n",
        encoding="utf-8",
    )
    return path


def _submit_backfills(instance: dg.DagsterInstance, days: list[dt.date]) -> None:
    from assets.definitions import defs

    graph = defs().resolve_asset_graph()
    for number, (start, end) in enumerate(CHUNKS, start=1):
        instance.add_backfill(
            PartitionBackfill.from_asset_partitions(
                backfill_id=f"history{number}",
                asset_graph=graph,
                partition_names=[d.isoformat() for d in days[start:end]],
                asset_selection=[BOOKINGS, CONTACTS],
                backfill_timestamp=time.time(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title=f"bookings history, part {number}",
                description=None,
                run_config=None,
            )
        )


def _most_at_once(instance: dg.DagsterInstance) -> int:
    """The most runs in progress at one moment (an end before a start at the same instant)."""
    edges = sorted(
        (moment, change)
        for record in instance.get_run_records()
        for moment, change in ((record.start_time, 1), (record.end_time, -1))
        if moment is not None
    )
    return max(itertools.accumulate(change for _, change in edges))


def _wait_for_runs(instance: dg.DagsterInstance, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "the daemon died"
        runs = instance.get_runs()
        if len(runs) >= RUNS and all(r.is_finished for r in runs):
            return
        time.sleep(POLL_S)
    statuses = Counter(r.status.value for r in instance.get_runs())
    raise AssertionError(f"runs not finished in {RUNS_TIMEOUT_S} s: {dict(statuses)}")


def _drop_changeset_and_start_sensor(
    sandbox: SandboxServer, env: dict[str, str], workspace: Path, cwd: Path
) -> tuple[str, list[str]]:
    """A change set in the inbox (future bookings only), then the sensor on."""
    text, uids = build_csv(sandbox, reschedules=2, cancels=3)
    inbox = Path(env["JICOO_CHANGESET_INBOX"])
    inbox.mkdir()
    (inbox / "moves.csv").write_text(text, encoding="utf-8")
    subprocess.run(  # noqa: S603 - Dagster's own CLI
        [str(BIN / "dagster"), "sensor", "start", NAMES.sensor("changeset_inbox"),
         "-w", str(workspace)],
        env=env, cwd=cwd, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return text, uids


def _run_daemon_until_done(
    instance: dg.DagsterInstance, env: dict[str, str], workspace: Path, where: Path
) -> int:
    """The daemon, in a working directory of its own, until every run has finished; its pid."""
    daemon_dir = where / "daemon"
    daemon_dir.mkdir()
    with (where / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(  # noqa: S603 - Dagster's own daemon
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env, cwd=daemon_dir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for_runs(instance, daemon)
        finally:
            daemon.send_signal(signal.SIGINT)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    runs = instance.get_runs()
    failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
    assert not failed, (where / "daemon.log").read_text(errors="replace")[-4000:]
    assert len(runs) == RUNS
    return daemon.pid


def _assert_steps_took_turns(instance: dg.DagsterInstance, daemon_pid: int) -> None:
    # Each step in a process of its own (the multiprocess executor), none of them the
    # daemon: a backfill run's two steps, the write-back run's one.
    step_pids = [
        record.event_log_entry.dagster_event.pid
        for run in instance.get_runs()
        for record in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.STEP_START
        ).records
        if record.event_log_entry.dagster_event is not None
    ]
    assert len(step_pids) == len(set(step_pids)) == 2 * len(CHUNKS) + 1, step_pids
    assert daemon_pid not in step_pids

    # The pool: deploy/dagster.yaml's default_limit gave jicoo_api_scale one slot in PostgreSQL,
    # and runs that were in progress together took turns at the API.
    limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
    assert limits == {NAMES.pool: 1}
    assert _most_at_once(instance) > 1
    spans = step_spans(instance, {BOOKINGS_OP, CONTACTS_OP, APPLY_LOG_OP})
    assert Counter(step for _, _, step in spans) == {
        BOOKINGS_OP: len(CHUNKS),
        CONTACTS_OP: len(CHUNKS),
        APPLY_LOG_OP: 1,
    }
    assert_one_at_a_time(spans)


def _assert_partitions_written_once(
    instance: dg.DagsterInstance, sandbox: SandboxServer, s3_endpoint: str, days: list[dt.date]
) -> None:
    """Every partition written once, with the sandbox's bookings (and their contacts) of that
    day."""
    for key in (BOOKINGS, CONTACTS):
        written = instance.fetch_materializations(key, limit=10 * DAYS).records
        counts = Counter(r.asset_materialization.partition for r in written)  # type: ignore[union-attr]
        assert counts == Counter(d.isoformat() for d in days), key
    fs = pafs.S3FileSystem(
        endpoint_override=s3_endpoint, scheme="http", access_key="testing",
        secret_key="testing", region="us-east-1",
    )  # fmt: skip
    for day in days:
        path = f"{BUCKET}/warehouse/bookings/day={day.isoformat()}/data.parquet"
        uids_written = pq.read_table(path, filesystem=fs, columns=["uid"]).column("uid")
        assert sorted(uids_written.to_pylist()) == sorted(_expected_uids(sandbox, day)), day
        path = f"{BUCKET}/warehouse/booking_contacts/day={day.isoformat()}/data.parquet"
        owners = pq.read_table(path, filesystem=fs, columns=["booking_uid"])
        assert Counter(owners.column("booking_uid").to_pylist()) == _expected_contacts(
            sandbox, day
        ), day
    assert sum(len(_expected_uids(sandbox, d)) for d in days) > 0


def _assert_applied_once(
    instance: dg.DagsterInstance,
    sandbox: SandboxServer,
    text: str,
    uids: list[str],
    ledger_url: str,
) -> None:
    """The change set applied exactly once, through the ledger in PostgreSQL."""
    (apply_event,) = instance.fetch_materializations(APPLY_LOG, limit=10).records
    assert apply_event.asset_materialization is not None
    metadata = apply_event.asset_materialization.metadata
    assert metadata["jicoo/posts_sent"] == dg.IntMetadataValue(len(uids))
    assert effective_posts(sandbox) == Counter(dict.fromkeys(uids, 1))
    parsed = parse_changeset(text.encode(), now=sandbox.config.clock())
    batch = f"moves-{parsed.content_hash[:12]}"
    assert_server_matches(sandbox, parsed, ledger_url, batch)


def _assert_instance_in_postgres(instance_url: str) -> None:
    """Run and asset records are in the instance's PostgreSQL database itself."""
    with psycopg.connect(instance_url) as conn:
        stored_runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone()
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchone()
    assert stored_runs == (RUNS,)
    assert materialized == (2 * DAYS + 1,)


@pytest.mark.slow
@pytest.mark.timeout(420)
# Dagster's own backfill code calls its deprecated AssetSelection.sources (1.13).
@pytest.mark.filterwarnings("ignore:Function `AssetSelection.sources`:DeprecationWarning")
@pytest.mark.system_clock(
    "the Dagster runs take today and the past from the system clock (partitions, reschedules)"
)
def test_the_deploy_configuration_runs_backfill_and_write_back_across_processes(
    system_sandbox: SandboxServer,
    postgres: PostgresServer,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = system_sandbox
    instance_url = postgres.create_database("dagster")
    ledger_url = postgres.create_database("ledger")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    env = _environment(sandbox, home, instance_url, ledger_url, s3_endpoint)
    for name in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL", "JICOO_ORGANIZATION"):
        monkeypatch.setenv(name, env[name])
    workspace = _workspace(tmp_path)
    days = _days()
    sandbox.set_faults(SANDBOX_LIMIT)
    sandbox.clear_requests()

    text, uids = _drop_changeset_and_start_sensor(sandbox, env, workspace, tmp_path)
    with dg.DagsterInstance.get() as instance:
        _submit_backfills(instance, days)
        daemon_pid = _run_daemon_until_done(instance, env, workspace, tmp_path)
        _assert_steps_took_turns(instance, daemon_pid)
        _assert_partitions_written_once(instance, sandbox, s3_endpoint, days)
        _assert_applied_once(instance, sandbox, text, uids, ledger_url)
    _assert_instance_in_postgres(instance_url)

    requests = [r for r in sandbox.requests() if str(r.get("path", "")).startswith("/v1/")]
    limited = sum(1 for r in requests if r.get("status") == 429)
    assert requests
    assert limited / len(requests) < MAX_429_SHARE, (limited, len(requests))
