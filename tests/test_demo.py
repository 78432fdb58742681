"""`make demo`: its change set plans and applies on the sandbox's day (``make test-dates``
runs it on other days too), and the demo never touches a user's state (it writes only to its
own folder).
"""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from jicoo_connector.changes import apply_changeset, parse_changeset, plan_changeset
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from scripts.example_changeset import CANCELS, RESCHEDULES, write_changeset
from tests.support.checksums import parquet_checksum, postgres_checksum, scalar
from tests.support.postgres_server import PostgresServer
from tests.support.sandbox import sandbox_settings
from tests.support.writeback_data import assert_server_matches

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"


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
