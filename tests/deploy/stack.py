"""The built image run as a deployment: its code server, a daemon, PostgreSQL, a sandbox.

The code server is the image's own command (its port moved to a free one on loopback) in a
buildah container on the host network; the daemon runs on the host with deploy/dagster.yaml
(PostgreSQL storage, queued runs, DefaultRunLauncher), so each run it launches is started by
the code server, inside the container, as the image's user. Two runs go through the queue:
one day of ``jicoo_default_daily_tables`` and one ``jicoo_default_apply_changeset``.
"""

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq

from jicoo_connector.changes import parse_changeset
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import JicooNames
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.config import SandboxConfig, system_clock
from jicoo_sandbox.server import SandboxServer
from tests.deploy.buildah import Container, DeployTestError, image_config, step
from tests.support.postgres_server import PostgresServer, dagster_url
from tests.support.writeback_data import assert_server_matches, build_csv

__all__ = ["run_deployment"]

REPO: Final = Path(__file__).resolve().parents[2]
BIN: Final = Path(sys.executable).parent
ZONE: Final = "Asia/Tokyo"
DATA: Final = "/data"  # the host folder the container sees, for Parquet and change sets
LOCATION: Final = "jicoo"
# The image's code location is one organization, JICOO_ORGANIZATION's default (not set here).
NAMES: Final = JicooNames(ConnectorConfig().organization)
DAILY_JOB: Final = NAMES.job("daily_tables")
APPLY_JOB: Final = NAMES.job("apply_changeset")
APPLY_LOG_OP: Final = NAMES.op("apply_log")
BATCH_ID: Final = "deploy-test"
SERVER_TIMEOUT_S: Final = 240.0
RUNS_TIMEOUT_S: Final = 420.0
CLI_TIMEOUT_S: Final = 180.0
POLL_S: Final = 0.25
FINISHED: Final = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(image: str, port: int) -> list[str]:
    """The image's CMD, listening on loopback at ``port`` instead of 0.0.0.0:4000."""
    cmd = image_config(image).get("Cmd")
    if not isinstance(cmd, list) or "--port" not in cmd or "--host" not in cmd:
        raise DeployTestError(f"{image}'s CMD is not a code server with --host/--port: {cmd}")
    args = [str(arg) for arg in cmd]
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    return args


def wait_for_definitions(server: Container, port: int) -> None:
    """Until the code server lists its repositories; the load error if it cannot."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster_shared.error import SerializableErrorInfo
    from dagster_shared.serdes import deserialize_value

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            raise DeployTestError(f"the code server stopped:\n{server.log_tail()}")
        try:
            answer = deserialize_value(client.list_repositories())
        except Exception:  # noqa: BLE001 - not listening or still loading: ask again
            time.sleep(POLL_S)
            continue
        if isinstance(answer, SerializableErrorInfo):
            raise DeployTestError(f"the image's definitions did not load:\n{answer.to_string()}")
        return
    raise DeployTestError(f"no definitions after {SERVER_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


@contextmanager
def daemon(env: Mapping[str, str], workspace: Path, log: Path) -> Iterator[None]:
    """``dagster-daemon run`` on the host, in its own session; SIGTERM to it alone at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - Dagster's own daemon
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=dict(env), cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(60)


def launch(env: Mapping[str, str], workspace: Path, job: str, **options: object) -> str:
    """``dagster job launch`` into the instance's queue; the run's id."""
    run_id = str(uuid.uuid4())
    args = [str(BIN / "dagster"), "job", "launch", "-w", str(workspace), "-l", LOCATION,
            "-j", job, "--run-id", run_id]  # fmt: skip
    for flag, value in options.items():
        args += [f"--{flag.replace('_', '-')}", json.dumps(value)]
    done = subprocess.run(  # noqa: S603 - Dagster's own CLI
        args, env=dict(env), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise DeployTestError(f"dagster job launch {job} failed:\n{done.stderr[-3000:]}")
    return run_id


def wait_for_runs(home: Path, run_ids: list[str], daemon_log: Path) -> dict[str, str]:
    """Each run's final status; the failures' error events when any run did not succeed."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        deadline = time.monotonic() + RUNS_TIMEOUT_S
        while time.monotonic() < deadline:
            runs = {run_id: instance.get_run_by_id(run_id) for run_id in run_ids}
            statuses = {i: r.status.value if r else "MISSING" for i, r in runs.items()}
            if all(status in FINISHED for status in statuses.values()):
                break
            time.sleep(POLL_S)
        else:
            tail = daemon_log.read_text(errors="replace")[-3000:]
            raise DeployTestError(f"runs unfinished after {RUNS_TIMEOUT_S:.0f} s: "
                                  f"{statuses}\ndaemon log:\n{tail}")  # fmt: skip
        failed = [i for i, status in statuses.items() if status != "SUCCESS"]
        if failed:
            errors = [
                f"{event.dagster_event_type}: {event.message}"
                for run_id in failed
                for event in instance.all_logs(run_id)
                if event.dagster_event is not None and event.dagster_event.is_failure
            ]
            raise DeployTestError(f"runs did not succeed: {statuses}\n" + "\n".join(errors))
    return statuses


def expected_uids(sandbox: SandboxServer, day: dt.date) -> set[str]:
    zone = ZoneInfo(ZONE)
    return {
        str(b["uid"])
        for b in sandbox.store.all_bookings()
        if dt.datetime.fromisoformat(str(b["startedAt"])).astimezone(zone).date() == day
    }


def check_day(sandbox: SandboxServer, data: Path, day: dt.date) -> str:
    """The day's bookings in Parquet are the sandbox's, written by the image's user."""
    path = Path(ParquetStore(data / "warehouse").partition_path(TABLES["bookings"].spec, day))
    if not path.is_file():
        raise DeployTestError(f"the daily run succeeded but wrote no {path}")
    uids = set(pq.read_table(path, columns=["uid"])["uid"].to_pylist())
    wanted = expected_uids(sandbox, day)
    if uids != wanted or not wanted:
        raise DeployTestError(f"{path}: {len(uids)} bookings, the sandbox has {len(wanted)}")
    owner = path.stat().st_uid
    if owner == os.geteuid():
        raise DeployTestError(f"{path} is owned by uid {owner}: the run did not run in the image")
    return f"{day}: {len(uids)} bookings in {path.name}, written by uid {owner} (the image's user)"


def connector_env(sandbox: SandboxServer, instance_url: str, ledger_url: str) -> dict[str, str]:
    """The code server's (and so each run's) settings, paths as the container sees them; the
    ledger and the webhook events (which booking_events_sensor reads) in PostgreSQL."""
    return {
        "DAGSTER_POSTGRES_URL": dagster_url(instance_url),
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_TIMEZONE": ZONE,
        "JICOO_WAREHOUSE_ROOT": f"{DATA}/warehouse",
        "JICOO_DUCKDB_PATH": f"{DATA}/warehouse.duckdb",
        "JICOO_LEDGER_URL": ledger_url,
        "JICOO_APPLY_LOG_ROOT": f"{DATA}/apply_log",
        "JICOO_CHANGESET_INBOX": f"{DATA}/inbox",
        "JICOO_WEBHOOK_DB_URL": ledger_url,
    }


def host_side(work: Path, instance_url: str, port: int) -> tuple[Path, Path, dict[str, str]]:
    """DAGSTER_HOME with deploy/dagster.yaml, the workspace (the code server), the environment
    of the daemon and the CLI."""
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    workspace = work / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: {LOCATION}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "DAGSTER_POSTGRES_URL": dagster_url(instance_url)}  # fmt: skip
    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
    return home, workspace, env


def run_deployment(image: str, work: Path) -> str:
    """Code server, daemon, the two runs; a summary of what they did."""
    data = work / "data"
    (data / "changes").mkdir(parents=True)
    data.chmod(0o777)  # the container's user writes here
    (data / "changes").chmod(0o777)
    port = _free_port()
    # The runs date their partitions by the system clock inside the image: so does the sandbox.
    config = SandboxConfig(seed=7, bookings=2000, clock=system_clock)
    started = time.monotonic()
    with PostgresServer() as postgres, SandboxServer(config) as sandbox:
        print(f"  PostgreSQL and sandbox: {time.monotonic() - started:.1f} s", flush=True)
        instance_url = postgres.create_database("dagster")
        ledger_url = postgres.create_database("ledger")
        text, _ = build_csv(sandbox, reschedules=2, cancels=1)
        (data / "changes" / "moves.csv").write_text(text, encoding="utf-8")
        day = dt.datetime.now(ZoneInfo(ZONE)).date() - dt.timedelta(days=1)
        home, workspace, env = host_side(work, instance_url, port)
        server = Container(
            image, server_command(image, port),
            env=connector_env(sandbox, instance_url, ledger_url),
            volumes={data: DATA}, log=work / "code-server.log",
        )  # fmt: skip
        with server, daemon(env, workspace, work / "daemon.log"):
            with step("code server up, definitions loaded"):
                wait_for_definitions(server, port)
            config_json = {"ops": {APPLY_LOG_OP: {"config": {
                "path": f"{DATA}/changes/moves.csv", "batch_id": BATCH_ID}}}}  # fmt: skip
            # Both CLIs at once: each is a Python start and a workspace load, seconds apiece.
            with step("two runs launched"), ThreadPoolExecutor(2) as pool:
                daily_future = pool.submit(launch, env, workspace, DAILY_JOB,
                                           tags={"dagster/partition": day.isoformat()})  # fmt: skip
                apply_future = pool.submit(launch, env, workspace, APPLY_JOB,
                                           config_json=config_json)  # fmt: skip
                daily, apply = daily_future.result(), apply_future.result()
            with step("both runs finished"):
                statuses = wait_for_runs(home, [daily, apply], work / "daemon.log")
        written = check_day(sandbox, data, day)
        parsed = parse_changeset(text.encode())
        assert_server_matches(sandbox, parsed, ledger_url, BATCH_ID)
    return (
        f"runs through the daemon and the image's code server: {DAILY_JOB} "
        f"{statuses[daily]}, {APPLY_JOB} {statuses[apply]}\n"
        f"  {written}\n  change set: {len(parsed.changes)} changes applied, on the sandbox "
        "and final in the PostgreSQL ledger"
    )
