"""Helpers for the warehouse tests: sandbox extracts and load children (row checksums are in
tests/support/checksums.py, shared with the Dagster and demo tests)."""

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from jicoo_connector.extract import TABLES, extract_range
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import sandbox_settings, tokyo_today

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 90


def extract_days(sandbox: SandboxServer, root: Path, days: Sequence[dt.date]) -> None:
    """Every table of the sandbox into ``root``: day tables for ``days``, snapshots for the
    sandbox clock's today (its slots lie ahead of it)."""
    settings = sandbox_settings(sandbox)
    extract_range(
        settings,
        list(TABLES),
        min(days),
        max(days),
        str(root),
        zone="Asia/Tokyo",
        now=sandbox.config.clock(),
    )


def around_today(sandbox: SandboxServer, before: int, after: int) -> list[dt.date]:
    """Days around the sandbox clock's day in Tokyo (the day its data is spread around)."""
    today = tokyo_today(sandbox)
    return [today + dt.timedelta(days=n) for n in range(-before, after + 1)]


def load_command(url: str, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jicoo_connector.cli",
        "load",
        "--warehouse-url",
        url,
        "--root",
        str(root),
        *extra,
    ]


def start_load(url: str, root: Path, *extra: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(  # noqa: S603 - our own CLI
        load_command(url, root, *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def run_load(url: str, root: Path, *extra: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(  # noqa: S603 - our own CLI
        load_command(url, root, *extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
