"""Facts about the machine and the software a run used, stored with its results."""

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from harness.base import KIB, PYTHON, ROOT, child_env
from harness.children import last_json_line
from harness.envs import env_python

_PACKAGES = (
    "jicoo-connector",
    "jicoo-sandbox",
    "httpx",
    "pandas",
    "pyarrow",
    "orjson",
    "uvicorn",
    "duckdb",
    "adbc-driver-postgresql",
    "sqlalchemy",
    "psycopg",
)


def machine_info() -> dict[str, object]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kib = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0
    )
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(total_kib / KIB / KIB, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(),
        "git_commit": commit or None,
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    dlt_python = env_python("dlt")
    if dlt_python.exists():
        probe = subprocess.run(
            [str(dlt_python), "-c", "import dlt; print(dlt.__version__)"],
            capture_output=True,
            text=True,
            env=child_env(),
            check=False,
        )
        versions["dlt"] = probe.stdout.strip() or None
    return versions


def library_defaults() -> dict[str, object]:
    """The connector's own defaults the runs used (they are not overridden, except the limit)."""
    probe = subprocess.run(
        [
            PYTHON,
            "-c",
            "import json, jicoo_connector.settings as s, jicoo_connector.extract as e; "
            "print(json.dumps({k: getattr(m, k) for m in (s, e) for k in dir(m) "
            "if k.startswith('DEFAULT_') and isinstance(getattr(m, k), int | float | str)}))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    loaded = last_json_line(probe.stdout)
    return loaded if loaded is not None else {"error": probe.stderr.strip()[-300:]}


def warm_up(with_dlt: bool) -> None:
    """Import every tool once so the first measured run does not pay for cold .pyc caches."""
    subprocess.run(
        [PYTHON, "-c", "import httpx, pandas, pyarrow.parquet, jicoo_connector.extract"],
        cwd=ROOT,
        check=False,
        capture_output=True,
    )
    if with_dlt:
        subprocess.run(
            [str(env_python("dlt")), "-c", "from dlt.sources.rest_api import rest_api_source"],
            cwd=ROOT,
            env=child_env(),
            check=False,
            capture_output=True,
        )
