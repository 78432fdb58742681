"""A new user's Dagster project, made as Dagster's docs make one, with our wheel added unedited.

The wheel is built from this checkout; the project is made by `create-dagster project` (the
release of the Dagster this repository locks: PyPI may hold a newer `dagster` than
`dagster-dg-cli`, and a mismatched pair does not resolve) in a temporary folder outside the
checkout, with its own virtual environment (dagster, dagster-webserver, dagster-dg-cli and
nothing of ours), and `uv add` adds the wheel. Two organizations are scaffolded by
`dg scaffold defs` and filled in as the README says, checked and listed by `dg`, and one day of
bookings materialized for each by `dg launch`, each against a sandbox of its own seed.
"""

import datetime as dt
import importlib.metadata
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from jicoo_connector._compat import parse_datetime
from jicoo_connector.client import JicooClient
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.config import SandboxConfig, system_clock
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import TOKYO, sandbox_settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("\n## Add Jicoo to your Dagster project\n", 1)[1].split("\n## ", 1)[0]
UV = ROOT / ".uv" / "bin" / "uv"
TYPE = "jicoo_connector.dagster.JicooComponent"
PROJECT = "fresh"
ORGANIZATIONS = {"acme": 11, "globex": 23}  # organization -> its sandbox's seed
STEP_TIMEOUT_S = 600
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Organization:
    name: str
    sandbox: SandboxServer
    key: str

    @property
    def variable(self) -> str:
        return f"{self.name.upper()}_JICOO_API_KEY"


@dataclass
class Shell:
    """Commands as the user types them in the project, every output kept (the keys' audit)."""

    env: dict[str, str]
    outputs: list[str]

    def run(self, *args: str | Path, cwd: Path) -> str:
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - uv, create-dagster and the project's dg
            [str(arg) for arg in args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        output = done.stdout + done.stderr
        self.outputs.append(output)
        # Where the minutes go (shown with the failure, or live with --log-cli-level=INFO).
        logger.info("%.1f s: %s", time.monotonic() - started, " ".join(map(str, args[1:4])))
        assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{output[-4000:]}"
        return output


@pytest.fixture
def organizations() -> Iterator[list[Organization]]:
    """Two sandboxes of different seeds, each with a key of its own (no sandbox takes the
    other's), on the system clock: the project's Dagster dates its partitions by it."""
    started: list[Organization] = []
    try:
        for name, seed in ORGANIZATIONS.items():
            key = f"sk_test_{name}_{secrets.token_hex(12)}"
            config = SandboxConfig(seed=seed, api_keys=(key,), clock=system_clock)
            server = SandboxServer(config)
            server.start()
            started.append(Organization(name, server, key))
        yield started
    finally:
        for organization in started:
            organization.sandbox.stop()


def _shell(tmp_path: Path, organizations: list[Organization]) -> Shell:
    instance = tmp_path / "dagster_home"
    instance.mkdir()
    # The README's pool limit: each organization's API steps one at a time, in its own pool.
    (instance / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n",
        encoding="utf-8",
    )
    version = sys.version_info  # this interpreter's Python, outside our venv
    # The user's environment (its CA bundle and package index settings), without ours.
    theirs = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JICOO_", "DAGSTER_", "PYTEST_", "UV_"))
        and name not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env = {
        **theirs,
        "PATH": f"{UV.parent}:{theirs.get('PATH', '/usr/bin:/bin')}",
        "DAGSTER_HOME": str(instance),
        "UV_PYTHON": str(Path(sys.base_prefix) / "bin" / f"python{version.major}.{version.minor}"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        **{o.variable: o.key for o in organizations},
    }
    return Shell(env, [])


def _wheel(shell: Shell, out: Path) -> Path:
    shell.run(UV, "build", "--wheel", "--out-dir", out, ROOT, cwd=out.parent)
    (wheel,) = out.glob("jicoo_connector-*.whl")
    return wheel


def _filled_in(scaffolded: str, organization: Organization) -> str:
    """The scaffolded defs.yaml with the README's attributes it lacks, for this organization,
    and the base URL of its API (the sandbox)."""
    (readme_yaml,) = re.findall(r"```yaml\n(.*?)```", SECTION, re.S)
    name = organization.name
    readme = yaml.safe_load(readme_yaml.replace("acme", name).replace("ACME", name.upper()))
    attributes = yaml.safe_load(scaffolded)["attributes"]
    # What the scaffolder wrote is what the README shows.
    assert {k: readme["attributes"][k] for k in attributes} == attributes
    extra = {k: v for k, v in readme["attributes"].items() if k not in attributes}
    extra["base_url"] = organization.sandbox.base_url
    return scaffolded + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in extra.items())


def _bookings_by_day(organization: Organization) -> dict[dt.date, set[str]]:
    """Every booking uid of the organization's sandbox, by the Tokyo day it starts on."""
    with JicooClient(sandbox_settings(organization.sandbox)) as client:
        records = client.list_bookings().records
    days: dict[dt.date, set[str]] = {}
    for booking in records:
        start = parse_datetime(str(booking["startedAt"]))
        days.setdefault(start.astimezone(TOKYO).date(), set()).add(str(booking["uid"]))
    return days


def _day_to_extract(expected: list[dict[dt.date, set[str]]]) -> dt.date:
    """A day of the last week (a partition on any day) with bookings in every sandbox, the
    busiest such day."""
    today = dt.datetime.now(TOKYO).date()
    week = [today - dt.timedelta(days=n) for n in range(7)]
    day = max(week, key=lambda d: min(len(days.get(d, ())) for days in expected))
    assert all(days.get(day) for days in expected), f"no day of {week} has bookings in both"
    return day


def _project(shell: Shell, tmp_path: Path, organizations: list[Organization]) -> Path:
    """A project as a new user makes it, with the wheel added and two organizations
    scaffolded and filled in."""
    wheel = _wheel(shell, tmp_path / "dist")
    dagster = importlib.metadata.version("dagster")
    shell.run(
        UV, "tool", "run", "--from", f"create-dagster=={dagster}",
        "create-dagster", "project", "--uv-sync", PROJECT,
        cwd=tmp_path,
    )  # fmt: skip
    project = tmp_path / PROJECT
    shell.run(UV, "add", wheel, cwd=project)
    dg_ = project / ".venv" / "bin" / "dg"
    assert TYPE in shell.run(dg_, "list", "components", "--json", cwd=project)
    for organization in organizations:
        shell.run(dg_, "scaffold", "defs", TYPE, organization.name, cwd=project)
        defs_yaml = project / "src" / PROJECT / "defs" / organization.name / "defs.yaml"
        scaffolded = defs_yaml.read_text(encoding="utf-8")
        defs_yaml.write_text(_filled_in(scaffolded, organization), encoding="utf-8")
    return project


def _pools_of_runs(home: Path) -> dict[str, set[str | None]]:
    """Asset key -> the pools the steps materializing it ran under, over every run."""
    pools: dict[str, set[str | None]] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert runs, "no run was recorded"
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
            assert run.execution_plan_snapshot_id is not None
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            for key in run.asset_selection or ():
                pools.setdefault(key.to_user_string(), set()).update(s.pool for s in plan.steps)
        used = set(instance.event_log_storage.get_concurrency_keys())
    assert {f"jicoo_api_{name}" for name in ORGANIZATIONS} <= used
    return pools


def _files_holding(folder: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and ".venv" not in path.parts and needle in path.read_bytes()
    ]


# Builds a wheel, makes a project and its environment, and runs dg six times: minutes.
@pytest.mark.slow
@pytest.mark.timeout(4 * STEP_TIMEOUT_S)
def test_a_fresh_dagster_project_adds_the_wheel_and_materializes_two_organizations(
    tmp_path: Path, organizations: list[Organization]
) -> None:
    shell = _shell(tmp_path, organizations)
    expected = [_bookings_by_day(organization) for organization in organizations]
    day = _day_to_extract(expected)
    project = _project(shell, tmp_path, organizations)
    dg_ = project / ".venv" / "bin" / "dg"

    assert "All definitions loaded successfully" in shell.run(dg_, "check", "defs", cwd=project)
    listed = shell.run(dg_, "list", "defs", "--json", cwd=project)
    for organization in organizations:
        assert f"jicoo/{organization.name}/bookings" in listed
        asset = f"key:jicoo/{organization.name}/bookings"
        shell.run(dg_, "launch", "--assets", asset, "--partition", day.isoformat(), cwd=project)

    for organization, days in zip(organizations, expected, strict=True):
        store = ParquetStore(project / "data" / "jicoo" / organization.name / "warehouse")
        table = store.read_partition(TABLES["bookings"].spec, day)
        assert set(table.column("uid").to_pylist()) == days[day], organization.name
    assert expected[0][day] != expected[1][day]  # so a swapped organization would show
    pools = _pools_of_runs(Path(shell.env["DAGSTER_HOME"]))
    for name in ORGANIZATIONS:
        assert pools[f"jicoo/{name}/bookings"] == {f"jicoo_api_{name}"}
    for organization in organizations:
        assert not _files_holding(Path(shell.env["DAGSTER_HOME"]), organization.key)
        assert not _files_holding(project, organization.key)
        assert not [out for out in shell.outputs if organization.key in out]
