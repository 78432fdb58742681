"""Helpers for the warehouse tests: sandbox extracts, canonical row checksums, load children."""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import psycopg

from jicoo_connector.extract import TABLES, extract_range
from jicoo_connector.storage import ParquetStore
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


def _canonical(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _canonical(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def checksum(rows: Iterable[Mapping[str, object]]) -> tuple[int, str]:
    """(row count, SHA-256 of the sorted canonical rows): equal for equal multisets of rows,
    whatever the engine's types for timestamps and JSON."""
    lines = sorted(json.dumps(_canonical(dict(row)), sort_keys=True) for row in rows)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return len(lines), digest


def parquet_checksum(store: ParquetStore, table: str) -> tuple[int, str]:
    rows: list[Mapping[str, object]] = []
    for value in store.list_partitions(TABLES[table].spec):
        rows.extend(store.read_partition(TABLES[table].spec, value).to_pylist())
    return checksum(rows)


def postgres_checksum(url: str, table: str) -> tuple[int, str]:
    columns = TABLES[table].spec.schema.names
    names = ", ".join(f'"{c}"' for c in columns)
    with psycopg.connect(url) as conn:
        fetched = conn.execute(f'SELECT {names} FROM "{table}"').fetchall()  # noqa: S608
    return checksum(dict(zip(columns, row, strict=True)) for row in fetched)


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


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
