"""One request budget for the account across Dagster runs and steps (the organization's pool,
`jicoo_api_<organization>`).

Three runs at once through a real instance configured as `make dagster-home` configures it,
each launched by Dagster's own CLI, against the sandbox limited to 10 requests/s: the daily job
over 10 days and the snapshots job with the default (multiprocess) executor, and the webhook
refresh of two other days with its in-process executor (the pool binds both executors).
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from jicoo_connector.dagster import JicooNames
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import assert_one_at_a_time, range_tags, step_spans
from tests.support.sandbox import tokyo_today

ROOT = Path(__file__).resolve().parents[2]
RATE = 10
MAX_429_SHARE = 0.02
# The code location's organization here (JICOO_ORGANIZATION), and so its names.
NAMES = JicooNames("budget")
DAILY_JOB = NAMES.job("daily_tables")
SNAPSHOTS_JOB = NAMES.job("snapshots")
WEBHOOK_JOB = NAMES.job("webhook_refresh")
RUN_TIMEOUT_S = 300
# The steps that call the API (their ops are in the pool); the warehouse reload is not.
API_STEPS = {
    NAMES.op(table)
    for table in (
        "bookings",
        "booking_contacts",
        "schedules",
        "availability_calendars",
        "available_slots",
        "event_types",
        "users",
    )
}


def _launch(
    job: str, env: dict[str, str], tags: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    dagster = str(Path(sys.executable).with_name("dagster"))
    argv = [dagster, "job", "execute", "-m", "assets.definitions", "-a", "defs", "-j", job]
    if tags:
        argv += ["--tags", json.dumps(tags)]
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # noqa: S603 - our own venv's dagster
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_TIMEOUT_S)
def test_runs_at_once_share_the_account_budget_whatever_the_executor(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    sandbox.set_faults({"rate_limit": {"rps": RATE, "burst": 2 * RATE}})
    sandbox.clear_requests()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "JICOO_ORGANIZATION": NAMES.organization,
        "JICOO_API_KEY": sandbox.api_key,
        "JICOO_BASE_URL": sandbox.base_url,
        "JICOO_RATE_LIMIT": str(RATE),
        "JICOO_WAREHOUSE_ROOT": str(tmp_path / "wh"),
        "JICOO_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
    }
    # The storage exists before the runs start: two processes creating it at once race.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []
    today = tokyo_today(sandbox)
    daily = range_tags(today - dt.timedelta(days=5), today + dt.timedelta(days=4))
    # Days the daily run does not write: the runs replace no partition of each other's.
    webhook = range_tags(today + dt.timedelta(days=5), today + dt.timedelta(days=6))
    runs = [
        _launch(DAILY_JOB, env, daily, tmp_path / "daily.log"),
        _launch(SNAPSHOTS_JOB, env, {}, tmp_path / "snapshots.log"),
        _launch(WEBHOOK_JOB, env, webhook, tmp_path / "webhook.log"),
    ]
    for run, name in zip(runs, ("daily", "snapshots", "webhook"), strict=True):
        assert run.wait(RUN_TIMEOUT_S) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]

    api = [e for e in sandbox.requests() if str(e["path"]).startswith("/v1/")]
    answered_429 = sum(1 for e in api if e["status"] == 429)
    assert len(api) > 100  # contacts of ten days and the snapshots: enough to hit the limit
    assert answered_429 / len(api) < MAX_429_SHARE, (answered_429, len(api))

    with dg.DagsterInstance.from_config(str(home)) as instance:  # what the runs wrote
        statuses = {r.job_name: r.status for r in instance.get_runs()}
        spans = step_spans(instance, API_STEPS)
        (webhook_run,) = instance.get_runs(dg.RunsFilter(job_name=WEBHOOK_JOB))
        webhook_pids = {
            record.event_log_entry.dagster_event.pid
            for record in instance.get_records_for_run(
                webhook_run.run_id, of_type=dg.DagsterEventType.STEP_START
            ).records
            if record.event_log_entry.dagster_event is not None
        }
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
    assert statuses == {
        DAILY_JOB: dg.DagsterRunStatus.SUCCESS,
        SNAPSHOTS_JOB: dg.DagsterRunStatus.SUCCESS,
        WEBHOOK_JOB: dg.DagsterRunStatus.SUCCESS,
    }
    assert limits == {NAMES.pool: 1}
    assert len(webhook_pids) == 1  # its two steps in one process: the in-process executor
    # The pool's one slot: no two API steps of any run ever ran at the same time.
    assert {step for _, _, step in spans} == API_STEPS
    assert_one_at_a_time(spans)
