"""warehouse: 500,000 bookings [20,000] of Parquet (extracted once by ours, not measured) into
one PostgreSQL server, `jicoo load --full` against pandas.DataFrame.to_sql, each into a new
database; then, on a loaded database, an incremental reload after a 3-day change against a
full reload."""

import datetime as dt
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.base import BENCH, PYTHON, ROOT, child_env
from harness.children import ChildResult, count_parquet_rows, describe_result, run_child, summarize
from harness.measure import Context, paired_ratio
from harness.report import Target, targets_of
from harness.sandbox import Sandbox, SandboxSpec
from harness.tools import Window, ours_lib_tool

from scenarios import Scenario

BOOKINGS_FULL = 500_000
BOOKINGS_QUICK = 20_000
# The baseline alone takes minutes at 500,000 rows: one paired run unless --runs says more.
RUNS = 1
CHANGED_DAYS = 3
OURS_LOAD = "ours_load"
PANDAS_TO_SQL = "pandas_to_sql"
TARGET_WAREHOUSE_SPEEDUP = 10.0
TARGET_WAREHOUSE_RSS_RATIO = 1.0

TOOLS = {
    OURS_LOAD: "jicoo load --tables bookings --full (ADBC COPY into a staging table, "
    "one-transaction merge)",
    PANDAS_TO_SQL: "benchmarks/pandas_to_sql.py: read_parquet, hosts to JSON text, "
    "to_sql(method='multi', chunksize=65535 // columns), SQLAlchemy + psycopg",
}


def _load_argv(url: str, root: Path, *extra: str) -> list[str]:
    argv = [PYTHON, "-m", "jicoo_connector.cli", "load", "--tables", "bookings"]
    return [*argv, "--warehouse-url", url, "--root", str(root), *extra]


def _postgres_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM bookings").fetchone()
    return int(row[0]) if row else 0


def _extract_once(ctx: Context, spec: SandboxSpec, parquet: Path, work: Path) -> int:
    """The bookings Parquet both loaders read (not measured); its row count."""
    with Sandbox(spec) as sandbox:
        expected = sandbox.total_bookings()
        print(f"  sandbox {sandbox.base_url}: {expected} bookings; extracting them (not measured)")
        tool = ours_lib_tool()
        argv = tool.argv(sandbox.base_url, parquet, Window.around(ctx.anchor))
        setup = run_child("extract", 0, argv, tool.env(""), work / "logs")
    rows = count_parquet_rows(parquet / "bookings")
    if not setup.ok or rows != expected:
        raise OSError(f"the warehouse scenario's extract wrote {rows} of {expected} rows")
    return expected


def run(ctx: Context) -> dict[str, object]:
    """Both loaders on the same data and server, interleaved; then incremental against full."""
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres_server import PostgresServer

    work = ctx.work / "warehouse"
    shutil.rmtree(work, ignore_errors=True)
    parquet = work / "parquet"
    spec = SandboxSpec(bookings=ctx.size(BOOKINGS_FULL, BOOKINGS_QUICK), anchor=ctx.anchor)
    scenario: dict[str, object] = {
        "sandbox": spec.settings(),
        "tools": TOOLS,
        "postgres": "tests/support/postgres_server.py: the machine's pg_ctl (else the pgserver "
        "wheel's), fsync=off, one server for every run, a new database per run",
    }
    expected = scenario["expected_rows"] = _extract_once(ctx, spec, parquet, work)
    per_tool: dict[str, list[ChildResult]] = {OURS_LOAD: [], PANDAS_TO_SQL: []}
    with PostgresServer() as server:
        for run in range(1, ctx.runs(full=RUNS, quick=RUNS) + 1):
            for name in (OURS_LOAD, PANDAS_TO_SQL):
                result = _load_once(server, name, run, parquet, expected, work)
                per_tool[name].append(result)
                print("    " + describe_result(result))
        scenario["incremental"] = _incremental_vs_full(ctx, server, parquet, expected, work)
    scenario["runs"] = {k: [asdict(r) for r in v] for k, v in per_tool.items()}
    scenario["medians"] = {k: summarize(v) for k, v in per_tool.items() if any(r.ok for r in v)}
    speedup = paired_ratio(scenario, PANDAS_TO_SQL, OURS_LOAD)
    scenario["ratios"] = {f"{PANDAS_TO_SQL}/{OURS_LOAD}": speedup}
    scenario["speedup"] = speedup
    scenario["rss_ratio"] = paired_ratio(scenario, OURS_LOAD, PANDAS_TO_SQL, "max_rss_mib")
    shutil.rmtree(work, ignore_errors=True)
    return scenario


def _load_once(
    server: Any, name: str, run: int, parquet: Path, expected: int, work: Path
) -> ChildResult:
    url = server.create_database(f"{name}_{run}")
    if name == OURS_LOAD:
        argv = _load_argv(url, parquet, "--full")
    else:
        argv = [PYTHON, str(BENCH / "pandas_to_sql.py"), "--root", str(parquet), "--url", url]
    result = run_child(name, run, argv, child_env(), work / "logs")
    if result.ok:
        result.rows = _postgres_rows(url)
        if result.rows != expected:
            result.ok = False
            result.error = f"loaded {result.rows} rows, the Parquet has {expected}"
    return result


def _rewrite_days(parquet: Path, days: list[dt.date]) -> int:
    """Re-write the days' partitions as a re-extract does; the rows they hold."""
    from jicoo_connector.extract import TABLES
    from jicoo_connector.storage import ParquetStore

    bookings = TABLES["bookings"].spec
    store = ParquetStore(parquet)
    changed = 0
    for day in days:
        data = store.read_partition(bookings, day)
        store.write_partition(bookings, day, data.to_batches())
        changed += data.num_rows
    return changed


def _incremental_vs_full(
    ctx: Context, server: Any, parquet: Path, expected: int, work: Path
) -> dict[str, object]:
    """On a loaded database: 3 day partitions re-written, then `jicoo load` (incremental) and
    `jicoo load --full`, each measured."""
    url = server.create_database("incremental")
    first = run_child("initial_load", 0, _load_argv(url, parquet), child_env(), work / "logs")
    days = [ctx.anchor + dt.timedelta(days=n) for n in range(CHANGED_DAYS)]
    out: dict[str, object] = {
        "changed_days": [d.isoformat() for d in days],
        "changed_rows": _rewrite_days(parquet, days),
    }
    for name, extra in (("incremental", ()), ("full", ("--full",))):
        results = []
        for run in range(1, ctx.runs() + 1):
            if name == "incremental" and run > 1:  # the same 3-day change again
                _rewrite_days(parquet, days)
            argv = _load_argv(url, parquet, *extra)
            result = run_child(f"reload_{name}", run, argv, child_env(), work / "logs")
            result.rows = _postgres_rows(url)
            result.ok = result.ok and first.ok and result.rows == expected
            results.append(result)
            print("    " + describe_result(result))
        out[name] = summarize(results)
    incremental, full = out["incremental"], out["full"]
    if isinstance(incremental, dict) and isinstance(full, dict) and incremental.get("wall_s"):
        out["full_over_incremental"] = (full.get("wall_s") or 0) / incremental["wall_s"]
    return out


def targets(scenario: Mapping[str, object]) -> list[Target]:
    return targets_of(
        "warehouse",
        scenario,
        ("to_sql wall / jicoo load wall", "speedup", ">=", TARGET_WAREHOUSE_SPEEDUP),
        ("jicoo load / to_sql peak RSS", "rss_ratio", "<=", TARGET_WAREHOUSE_RSS_RATIO),
    )


SCENARIO = Scenario("warehouse", run, targets)
