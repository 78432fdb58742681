"""`make demo`: its change set plans and applies on the sandbox's day (``make test-dates``
runs it on other days too), and the demo never touches a user's state (it writes only to its
own folder).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

from jicoo_connector.changes import apply_changeset, parse_changeset, plan_changeset
from jicoo_connector.dagster import JicooNames
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.config import SandboxConfig, system_clock
from jicoo_sandbox.server import SandboxServer
from scripts.example_changeset import BOOKINGS, CANCELS, RESCHEDULES, SEED, write_changeset
from tests.support.checksums import parquet_checksum, postgres_checksum, scalar
from tests.support.postgres_server import PostgresServer
from tests.support.sandbox import sandbox_settings
from tests.support.writeback_data import assert_server_matches

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"
EXAMPLE = ROOT / "scripts" / "example_changeset.py"
DEV = ROOT / "scripts" / "dev.py"
# The demo serves one organization, "default": its schedules as the factory names them.
SCHEDULES = {JicooNames("default").schedule(name) for name in ("refresh", "sweep", "snapshots")}
DEV_START_S = 240.0


def _state(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _demo(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        # The user's own configured state: the demo must ignore it too.
        "JICOO_LEDGER_PATH": str(tmp_path / "user" / "ledger.sqlite"),
        "JICOO_APPLY_LOG_ROOT": str(tmp_path / "user" / "apply_log"),
        "JICOO_WAREHOUSE_ROOT": str(tmp_path / "user" / "warehouse"),
        "JICOO_DUCKDB_PATH": str(tmp_path / "user" / "warehouse.duckdb"),
        **(env or {}),
    }
    return subprocess.run(  # noqa: S603
        [sys.executable, str(DEMO), *args],
        cwd=tmp_path,  # so the default relative paths (data/...) are under tmp_path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _sentinels(tmp_path: Path) -> None:
    for base in (tmp_path / "data", tmp_path / "user"):
        for name in (
            "ledger.sqlite",
            "ledger.sqlite-wal",
            "apply_log/batch=real/run-1.parquet",
            "warehouse/bookings/day=2026-01-01/data.parquet",
            "warehouse.duckdb",
        ):
            path = base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"sentinel {name}".encode())


def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    done = _demo(tmp_path, "--data-dir", str(mine))
    assert done.returncode != 0
    assert "is not empty and not a demo folder" in done.stderr
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.slow
def test_the_demo_leaves_the_default_and_configured_paths_untouched(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Also the warehouses: a user's JICOO_WAREHOUSE_URL stays empty, and the warehouse the
    demo is given by name (JICOO_DEMO_WAREHOUSE_URL) receives exactly its Parquet tables."""
    _sentinels(tmp_path)
    before = _state(tmp_path / "data") | _state(tmp_path / "user")
    users_warehouse, demo_warehouse = postgres.create_database(), postgres.create_database()
    demo_dir = tmp_path / "demo"
    done = _demo(
        tmp_path,
        "--data-dir",
        str(demo_dir),
        env={"JICOO_WAREHOUSE_URL": users_warehouse, "JICOO_DEMO_WAREHOUSE_URL": demo_warehouse},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    assert _state(tmp_path / "data") | _state(tmp_path / "user") == before
    # ...and the demo did its work in its own folder.
    assert (demo_dir / "ledger.sqlite").is_file()
    assert list((demo_dir / "apply_log").rglob("*.parquet"))
    assert list((demo_dir / "warehouse" / "bookings").rglob("*.parquet"))
    assert "jicoo/posts_sent: 0" in done.stdout  # the second apply sent nothing
    tables_sql = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert scalar(users_warehouse, tables_sql) == 0
    store = ParquetStore(demo_dir / "warehouse")
    for table in ("bookings", "booking_contacts", "users"):
        rows, digest = parquet_checksum(store, table)
        assert rows > 0, table
        assert postgres_checksum(demo_warehouse, table) == (rows, digest), table


def test_the_demo_changeset_plans_and_applies_without_failures(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    now = sandbox.config.clock()
    path = tmp_path / "demo.csv"
    write_changeset(sandbox.base_url, sandbox.api_key, path, now)
    parsed = parse_changeset(path, now=now)
    assert parsed.rejected == []
    actions = Counter(change.action.value for change in parsed.changes)
    assert actions == {"reschedule": RESCHEDULES, "cancel": CANCELS}
    settings = sandbox_settings(sandbox)
    rows = RESCHEDULES + CANCELS
    plan = plan_changeset(settings, parsed, now=now)
    assert plan.counts() == {"will_apply": rows}, [i.reason for i in plan.items]
    ledger = tmp_path / "ledger.sqlite"
    report = apply_changeset(settings, parsed, ledger=ledger, batch_id="demo", plan=plan)
    assert report.counts == {"applied": rows}, report.summary()
    assert_server_matches(sandbox, parsed, ledger, batch_id="demo")


@pytest.mark.system_clock(
    "make sandbox writes today's free slots and the CLI refuses targets in the past, both by "
    "the system clock"
)
def test_make_sandbox_writes_an_example_changeset_that_plans_cleanly_against_it(
    tmp_path: Path,
) -> None:
    """`make sandbox` first writes data/changesets/example.csv from a seed-7 sandbox of its own
    (here into the test's folder), then serves the same world: seed 7, 2,000 bookings, anchored
    on the system clock's today. Any day. The world is started here, not taken from the
    session, whose anchor stays on the day the session began (a run crossing midnight)."""
    rule = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("sandbox:")
    )
    assert "example-changeset" in rule.split("##")[0]
    example = tmp_path / "example.csv"
    subprocess.run(  # noqa: S603 - the project's own script, as make runs it
        [sys.executable, str(EXAMPLE), "--out", str(example)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=300,
        check=True,
    )
    world = SandboxConfig(seed=SEED, bookings=BOOKINGS, clock=system_clock)
    with SandboxServer(world) as served:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JICOO_")},
            "PYTHONPATH": str(ROOT),
            "JICOO_API_KEY": served.api_key,
            "JICOO_BASE_URL": served.base_url,
            "JICOO_RATE_LIMIT": "200",
        }
        done = subprocess.run(  # noqa: S603 - our own CLI, as the README says to run it
            [sys.executable, "-m", "jicoo_connector.cli", "apply", str(example), "--dry-run"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    rows = RESCHEDULES + CANCELS
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"will_apply {rows} (nothing was sent)" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# Slow tier: `dagster dev` starts a webserver, a daemon and code servers (about a minute).
@pytest.mark.slow
def test_make_dev_runs_the_schedules_in_its_own_dagster_home(tmp_path: Path) -> None:
    users_home, demo_dir, port = tmp_path / "users_home", tmp_path / "demo", _free_port()
    child = subprocess.Popen(  # noqa: S603 - the project's own script, as make runs it
        [sys.executable, str(DEV), "--data-dir", str(demo_dir), "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(users_home), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its group: dev.py, dagster dev and their children
    )
    try:
        deadline = time.monotonic() + DEV_START_S
        while not _serving(f"http://127.0.0.1:{port}/server_info"):
            assert child.poll() is None, "make dev ended before the UI served"
            assert time.monotonic() < deadline, "the UI did not serve"
            time.sleep(1)
        with dg.DagsterInstance.from_config(str(demo_dir / "dagster_home")) as instance:
            states = {
                state.instigator_name: state.status
                for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
            }
    finally:
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        child.wait(timeout=120)
    assert states == dict.fromkeys(SCHEDULES, InstigatorStatus.RUNNING)
    assert not users_home.exists()  # a user's instance never sees the demo's runs
