"""The benchmark harness: our extractor and write-back against the alternatives, on the sandbox.

Every scenario starts its own sandbox process (`jicoo-sandbox serve --port 0`) on loopback, and
every measured tool runs as its own child process, reaped with ``os.wait4`` so that wall time,
CPU time and peak RSS belong to that tool alone. Runs of different tools are interleaved and
ratios are taken run by run (run i of tool X over run i of ours), then the median.

    .venv/bin/python benchmarks/run.py            # full size, 3 runs (make bench)
    .venv/bin/python benchmarks/run.py --quick    # 5,000 bookings, 1 run (make bench-quick)
    .venv/bin/python benchmarks/run.py --quick --only extract_0ms,throttled
"""

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
BENCH_VENV = BENCH / ".venv-bench"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
REQUIREMENTS_DLT = BENCH / "requirements-dlt.txt"
BENCH_VENV_STAMP = BENCH_VENV / ".requirements.sha256"
PYTHON = sys.executable

SANDBOX_KEY = "sk_test_sandbox"
SANDBOX_SEED = 7
SANDBOX_START_TIMEOUT = 900.0
CHILD_TIMEOUT = 3600.0
HTTP_TIMEOUT = 60.0
# The sandbox spreads bookings over [anchor - 60 d, anchor + 30 d]; the extract window is wider
# by a margin so every tool extracts every booking and row counts can be compared exactly.
PAST_DAYS = 60
FUTURE_DAYS = 30
WINDOW_MARGIN_DAYS = 2
# Unthrottled scenarios: the sandbox has no limit, so our client's limiter is opened up.
# The naive script and dlt have no limiter at all.
OPEN_RATE_LIMIT = 10_000.0
OPEN_BURST = 1_000
THROTTLE_RPS = 10.0
THROTTLE_BURST = 10
SLOW_LATENCY_MS = 50.0
STATUS_TOO_MANY_REQUESTS = 429
EXIT_NOT_AVAILABLE = 3
KIB = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Targets: (measure, comparison, threshold). ">=" means bigger is better.
TARGET_SPEEDUP_50MS_DLT = 10.0
TARGET_SPEEDUP_50MS_NAIVE = 7.0
TARGET_SPEEDUP_0MS_DLT = 4.0
# At 0 ms no target against the naive script: a local unthrottled server is no user's case.
# What is reported instead is each tool's client CPU per 10,000 bookings.
CPU_PER_BOOKINGS = 10_000
TARGET_THROTTLE_SHARE = 0.95
TARGET_THROTTLE_429_SHARE = 0.02
TARGET_MEMORY_RATIO = 1.3
TARGET_WRITEBACK_RATIO = 1.15
TARGET_WAREHOUSE_SPEEDUP = 10.0
TARGET_WAREHOUSE_RSS_RATIO = 1.0
# The "3-day change" of the incremental warehouse reload.
WAREHOUSE_CHANGED_DAYS = 3
# Issue 18: a webhook'd change readable in Parquet within a minute (p95, daemon running).
TARGET_WEBHOOK_P95_S = 60.0
WEBHOOK_CHANGES_FULL = 100
WEBHOOK_CHANGES_QUICK = 20

OURS_LIB = "ours_lib"
OURS_LOAD = "ours_load"
PANDAS_TO_SQL = "pandas_to_sql"
OURS_CLI = "ours_cli"
NAIVE = "naive"
DLT = "dlt"


@dataclass(frozen=True)
class Sizes:
    extract_bookings: int
    memory_bookings: int | None  # None: the 500k run is skipped
    throttled_bookings: int
    contacts_bookings: int
    writeback_rows: int
    writeback_pool: int
    warehouse_bookings: int
    # The baseline alone takes minutes at 500,000 rows: one paired run unless --runs says more.
    warehouse_runs: int
    dagster_bookings: int
    runs: int


FULL = Sizes(
    extract_bookings=50_000,
    memory_bookings=500_000,
    throttled_bookings=20_000,
    contacts_bookings=5_000,
    writeback_rows=1_000,
    writeback_pool=6_000,
    warehouse_bookings=500_000,
    warehouse_runs=1,
    dagster_bookings=50_000,
    runs=3,
)
QUICK = Sizes(
    extract_bookings=5_000,
    memory_bookings=None,
    throttled_bookings=5_000,
    contacts_bookings=5_000,
    writeback_rows=100,
    writeback_pool=2_000,
    warehouse_bookings=20_000,
    warehouse_runs=1,
    dagster_bookings=5_000,
    runs=1,
)

SCENARIOS = (
    "extract_0ms",
    "extract_50ms",
    "memory",
    "throttled",
    "contacts",
    "writeback",
    "warehouse",
    "webhooks",
    "dagster",
)


# ---------------------------------------------------------------------------------------------
# Child processes


@dataclass
class ChildResult:
    tool: str
    run: int
    ok: bool
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mib: float
    inner_s: float | None = None  # the tool's own timing, imports excluded, when it prints one
    rows: int | None = None
    server_cpu_s: float | None = None
    requests: dict[str, int] | None = None
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    # The machine's 1-minute load when the run started: other work shares the cores.
    load_1m: float | None = None


def run_child(
    tool: str, run: int, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
) -> ChildResult:
    """Run one measured process and reap it with wait4: its own rusage, nobody else's."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{tool}-{run}.out", log_dir / f"{tool}-{run}.err"
    load_1m = os.getloadavg()[0]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, env=dict(env), cwd=ROOT, start_new_session=True
        )
        timer = threading.Timer(CHILD_TIMEOUT, _kill_group, args=(proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    # Reaped by wait4 already: tell Popen so it does not wait for the pid again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    result = ChildResult(
        tool=tool,
        run=run,
        ok=proc.returncode == 0,
        returncode=proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / KIB,  # Linux reports KiB
        load_1m=load_1m,
    )
    summary = _last_json_line(stdout)
    seconds = summary.get("seconds") if summary is not None else None
    if isinstance(seconds, int | float):
        result.inner_s = float(seconds)
    if not result.ok:
        result.error = _describe_failure(proc.returncode, stderr)
    return result


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _last_json_line(text: str) -> dict[str, object] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            loaded = json.loads(line)
            if isinstance(loaded, dict):
                return loaded
    return None


def _describe_failure(returncode: int, stderr: str) -> str:
    # Exception groups draw boxes (|, +---); the last line naming an error says the most.
    lines = [line.strip(" |") for line in stderr.strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith(("+", "..."))]
    errors = [line for line in lines if "Error" in line or "not available" in line]
    tail = (errors or lines or ["(no stderr)"])[-1]
    not_ready = ("not available yet", "invalid choice", "No module named 'jicoo_connector")
    if tail.startswith("not available yet"):
        return tail[:300]
    if returncode == EXIT_NOT_AVAILABLE or any(marker in stderr for marker in not_ready):
        return f"not available yet: {tail[:300]}"
    return f"exit {returncode}: {tail[:300]}"


def count_parquet_rows(path: Path) -> int:
    if path.is_file():
        return int(pq.ParquetFile(path).metadata.num_rows)
    files = [p for p in path.rglob("*.parquet") if ".tmp-" not in p.name]
    return sum(int(pq.ParquetFile(p).metadata.num_rows) for p in files)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JICOO_")}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# The sandbox


@dataclass(frozen=True)
class SandboxSpec:
    bookings: int
    latency_ms: float = 0.0
    rate_limit: float | None = None
    burst: int | None = None
    seed: int = SANDBOX_SEED
    anchor: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    journal: Path | None = None

    def settings(self) -> dict[str, object]:
        return {
            "bookings": self.bookings,
            "latency_ms": self.latency_ms,
            "rate_limit_rps": self.rate_limit,
            "burst": self.burst,
            "seed": self.seed,
            "anchor_date": self.anchor.isoformat(),
        }


class SandboxUnavailableError(RuntimeError):
    pass


def sandbox_process_class() -> Any:
    """The project's SandboxProcess, imported late so a missing sandbox is reported, not a crash."""
    from jicoo_sandbox import SandboxProcess

    return SandboxProcess


class Sandbox:
    """jicoo_sandbox's SandboxProcess (its own process, so its CPU is not the
    extractor's), plus what a benchmark needs: server CPU time and the request log."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.base_url = ""
        self._process: Any = None

    def __enter__(self) -> "Sandbox":
        self._process = sandbox_process_class()(
            seed=self.spec.seed,
            bookings=self.spec.bookings,
            api_keys=(SANDBOX_KEY,),
            latency_ms=self.spec.latency_ms or None,
            rate_limit=self.spec.rate_limit,
            burst=self.spec.burst,
            journal=self.spec.journal,
            anchor_date=self.spec.anchor.isoformat(),
            start_timeout_s=SANDBOX_START_TIMEOUT,
        )
        try:
            self._process.start()
        except RuntimeError as exc:
            raise SandboxUnavailableError(str(exc)) from exc
        self.base_url = self._process.base_url.rstrip("/")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return int(self._process.pid)

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the ")" of comm, utime and stime are fields 12 and 13 (0-based) of the rest.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"X-Jicoo-Api-Key": SANDBOX_KEY}, timeout=HTTP_TIMEOUT
        )

    def clear_log(self) -> bool:
        with self.client() as client, contextlib.suppress(httpx.HTTPError):
            return client.post("/_sandbox/requests/clear").status_code == httpx.codes.OK
        return False

    def counters(self) -> dict[str, object] | None:
        """What the sandbox says it served, from whichever introspection endpoint exists."""
        with self.client() as client:
            for path in ("/_sandbox/requests", "/_sandbox/faults"):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    response = client.get(path)
                    if response.status_code == httpx.codes.OK:
                        body = response.json()
                        if isinstance(body, dict):
                            return {"endpoint": path, "body": body}
                        return {"endpoint": path, "body": {"data": body}}
        return None

    def total_bookings(self, **params: str) -> int:
        with self.client() as client:
            body = get_with_retry(client, "/v1/bookings", {"perPage": "1", **params})
        total = body.get("totalCount")
        if not isinstance(total, int):
            raise SandboxUnavailableError(f"/v1/bookings answered without totalCount: {body}")
        return total


def get_with_retry(client: httpx.Client, path: str, params: Mapping[str, str]) -> dict[str, object]:
    """The harness's own reads (not measured) wait out 429s of a throttled sandbox."""
    for _ in range(100):
        response = client.get(path, params=dict(params))
        if response.status_code == STATUS_TOO_MANY_REQUESTS:
            time.sleep(float(response.headers.get("Retry-After", "1") or 1))
            continue
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise SandboxUnavailableError(f"{path} did not answer a JSON object")
        return body
    raise SandboxUnavailableError(f"{path}: still 429 after 100 tries")


# ---------------------------------------------------------------------------------------------
# Sandbox request accounting (the shape of /_sandbox/* is read defensively)


@dataclass
class RequestTally:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    source: str = "unavailable"

    @property
    def too_many(self) -> int:
        return self.by_status.get(str(STATUS_TOO_MANY_REQUESTS), 0)


def _entries(body: object) -> list[Mapping[str, object]] | None:
    if isinstance(body, list):
        return [e for e in body if isinstance(e, Mapping)]
    if isinstance(body, Mapping):
        for key in ("data", "requests", "log", "entries"):
            found = _entries(body.get(key)) if key in body else None
            if found is not None:
                return found
    return None


def _timestamp(entry: Mapping[str, object]) -> float | None:
    for key in ("at", "time", "timestamp", "ts", "started_at", "startedAt", "received_at"):
        value = entry.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def tally(snapshot: Mapping[str, object] | None, *, skip: int = 0) -> RequestTally:
    """Per-request entries if the sandbox lists them (entries after ``skip``), else counters."""
    result = RequestTally()
    if snapshot is None:
        return result
    body = snapshot.get("body")
    result.source = str(snapshot.get("endpoint"))
    entries = _entries(body)
    if entries is not None:
        for entry in entries[skip:]:
            path = str(entry.get("path", ""))
            if path.startswith("/_sandbox"):
                continue
            result.total += 1
            status = str(entry.get("status", entry.get("status_code", "?")))
            method = str(entry.get("method", "?")).upper()
            result.by_status[status] = result.by_status.get(status, 0) + 1
            result.by_method[method] = result.by_method.get(method, 0) + 1
            stamp = _timestamp(entry)
            if stamp is not None:
                result.first_at = stamp if result.first_at is None else min(result.first_at, stamp)
                result.last_at = stamp if result.last_at is None else max(result.last_at, stamp)
        return result
    counters = _flat_ints(body)
    result.by_status = {k: v for k, v in counters.items() if k.isdigit() or k.endswith("429")}
    result.total = counters.get("requests", counters.get("total", 0))
    return result


def _flat_ints(body: object, prefix: str = "") -> dict[str, int]:
    flat: dict[str, int] = {}
    if isinstance(body, Mapping):
        for key, value in body.items():
            name = f"{prefix}{key}"
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                flat[name] = value
            else:
                flat.update(_flat_ints(value, f"{name}."))
    return flat


def entry_count(snapshot: Mapping[str, object] | None) -> int:
    entries = _entries(snapshot.get("body")) if snapshot else None
    return len(entries) if entries is not None else 0


def counter_delta(before: RequestTally, after: RequestTally) -> RequestTally:
    """For counter-style endpoints: what happened between two snapshots."""
    delta = RequestTally(source=after.source)
    delta.total = after.total - before.total
    delta.by_status = {
        k: v - before.by_status.get(k, 0)
        for k, v in after.by_status.items()
        if v - before.by_status.get(k, 0)
    }
    return delta


@contextlib.contextmanager
def observe(sandbox: Sandbox) -> Iterator[Callable[[], RequestTally]]:
    """Counts the requests the sandbox served inside the block, whatever its log's shape.

    The request log (GET /_sandbox/requests) is cleared first where the sandbox allows it (it
    keeps at most 100,000 entries), else entries already there are skipped.
    """
    sandbox.clear_log()
    before = sandbox.counters()
    skip = entry_count(before)
    before_tally = tally(before)
    holder: list[RequestTally] = []
    yield lambda: holder[0] if holder else RequestTally()
    after = sandbox.counters()
    if _entries(after.get("body") if after else None) is not None:
        holder.append(tally(after, skip=skip))
    else:
        holder.append(counter_delta(before_tally, tally(after)))


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date

    @classmethod
    def around(cls, anchor: dt.date) -> "Window":
        return cls(
            anchor - dt.timedelta(days=PAST_DAYS + WINDOW_MARGIN_DAYS),
            anchor + dt.timedelta(days=FUTURE_DAYS + WINDOW_MARGIN_DAYS),
        )


@dataclass(frozen=True)
class Tool:
    name: str
    describe: str
    argv: Callable[[str, Path, Window], list[str]]
    env: Callable[[str], dict[str, str]]
    rows_at: Callable[[Path], Path]
    # Further tables the tool writes under its output root: their rows go to ``extra``.
    other_tables: tuple[str, ...] = ()


def ours_lib_tool(
    tables: str = "bookings", rate: float = OPEN_RATE_LIMIT, burst: int = OPEN_BURST
) -> Tool:
    return Tool(
        name=OURS_LIB,
        describe=f"jicoo_connector.extract.extract_range, tables={tables}, client {rate} rps",
        argv=lambda url, out, w: [
            PYTHON,
            str(BENCH / "ours.py"),
            "--base-url",
            url,
            "--out",
            str(out),
            "--tables",
            tables,
            "--start",
            w.start.isoformat(),
            "--end",
            w.end.isoformat(),
            "--rate-limit",
            str(rate),
            "--burst",
            str(burst),
        ],
        env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
        rows_at=lambda out: out / "bookings",
        other_tables=tuple(t for t in tables.split(",") if t != "bookings"),
    )


def ours_cli_tool(rate: float = OPEN_RATE_LIMIT, burst: int = OPEN_BURST) -> Tool:
    return Tool(
        name=OURS_CLI,
        describe=f"jicoo extract --tables bookings --quiet, JICOO_RATE_LIMIT={rate}",
        argv=lambda url, out, w: [
            PYTHON,
            "-m",
            "jicoo_connector.cli",
            "extract",
            "--tables",
            "bookings",
            "--start",
            w.start.isoformat(),
            "--end",
            w.end.isoformat(),
            "--out",
            str(out),
            "--quiet",  # no progress bar: the other tools print nothing either
        ],
        env=lambda url: child_env(
            JICOO_BASE_URL=url,
            JICOO_API_KEY=SANDBOX_KEY,
            JICOO_RATE_LIMIT=str(rate),
            JICOO_BURST=str(burst),
        ),
        rows_at=lambda out: out / "bookings",
    )


NAIVE_TOOL = Tool(
    name=NAIVE,
    describe="benchmarks/naive.py: sequential httpx pages of 100, pandas.to_parquet",
    argv=lambda url, out, w: [
        PYTHON,
        str(BENCH / "naive.py"),
        "--base-url",
        url,
        "--out",
        str(out / "bookings.parquet"),
    ],
    env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
    rows_at=lambda out: out / "bookings.parquet",
)

DLT_TOOL = Tool(
    name=DLT,
    describe="benchmarks/dlt_extract.py: dlt rest_api, page_number paginator, filesystem/parquet",
    argv=lambda url, out, w: [
        str(BENCH_PYTHON),
        str(BENCH / "dlt_extract.py"),
        "--base-url",
        url,
        "--out",
        str(out),
    ],
    env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
    rows_at=lambda out: out / "lake" / "jicoo" / "bookings",
)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def available_tools() -> dict[str, str | None]:
    """None when a tool can run; else why not (printed and stored, never silently skipped)."""
    status: dict[str, str | None] = {}
    probe = subprocess.run(
        [PYTHON, "-c", "from jicoo_connector.extract import extract_range"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    status[OURS_LIB] = (
        None if probe.returncode == 0 else f"not available yet: {_last_line(probe.stderr)}"
    )
    probe = subprocess.run(
        [PYTHON, "-m", "jicoo_connector.cli", "extract", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    status[OURS_CLI] = (
        None
        if probe.returncode == 0
        else f"not available yet: `jicoo extract`: {_last_line(probe.stderr)}"
    )
    probe = subprocess.run(
        [PYTHON, "-m", "jicoo_connector.cli", "apply", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    status["apply"] = (
        None
        if probe.returncode == 0
        else f"not available yet: `jicoo apply`: {_last_line(probe.stderr)}"
    )
    status[NAIVE] = None
    status[DLT] = None if BENCH_PYTHON.exists() else "dlt bench environment not set up"
    return status


# ---------------------------------------------------------------------------------------------
# The dlt bench environment


def ensure_dlt_env() -> str | None:
    """Create benchmarks/.venv-bench from requirements-dlt.txt once; None when ready."""
    wanted = hashlib.sha256(REQUIREMENTS_DLT.read_bytes()).hexdigest()
    stamp = BENCH_VENV_STAMP.read_text().strip() if BENCH_VENV_STAMP.exists() else ""
    if BENCH_PYTHON.exists() and stamp == wanted:
        return None
    uv = ROOT / ".uv" / "bin" / "uv"
    uv_path = str(uv) if uv.exists() else shutil.which("uv")
    if uv_path is None:
        return "uv not found (run `make setup`)"
    print(f"setting up the dlt bench environment in {BENCH_VENV.relative_to(ROOT)} ...")
    steps = [
        [uv_path, "venv", str(BENCH_VENV), "--python", "python3.11", "--allow-existing", "-q"],
        [
            uv_path,
            "pip",
            "install",
            "-q",
            "--python",
            str(BENCH_PYTHON),
            "-r",
            str(REQUIREMENTS_DLT),
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            return f"dlt env setup failed: {' '.join(step[:3])}: {done.stderr.strip()[-300:]}"
    BENCH_VENV_STAMP.write_text(wanted + "\n")
    return None


def dlt_env_ready() -> bool:
    if not BENCH_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(BENCH_PYTHON), "-c", "import dlt, pyarrow"],
        capture_output=True,
        env=child_env(),
        check=False,
    )
    return probe.returncode == 0


# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Context:
    sizes: Sizes
    quick: bool
    anchor: dt.date
    status: dict[str, str | None]
    results: dict[str, dict[str, object]]
    work: Path


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


Measured = tuple[dict[str, object], dict[str, list[ChildResult]]]


def measure_tools(
    ctx: Context, name: str, spec: SandboxSpec, tools: Sequence[Tool], runs: int
) -> Measured:
    """Runs every tool ``runs`` times, interleaved, against one sandbox; checks row counts."""
    window = Window.around(spec.anchor)
    scenario: dict[str, object] = {
        "sandbox": spec.settings(),
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
    }
    scenario["tools"] = {t.name: t.describe for t in tools}
    per_tool: dict[str, list[ChildResult]] = {t.name: [] for t in tools}
    skipped = {t.name: ctx.status.get(t.name) for t in tools if ctx.status.get(t.name)}
    scenario["skipped"] = skipped
    runnable = [t for t in tools if t.name not in skipped]
    if not runnable:
        scenario["runs"] = {}
        return scenario, per_tool
    work = ctx.work / name
    with Sandbox(spec) as sandbox:
        expected = sandbox.total_bookings()
        scenario["expected_rows"] = expected
        print(f"  sandbox {sandbox.base_url}: {expected} bookings, latency {spec.latency_ms} ms")
        for run in range(1, runs + 1):
            for tool in runnable:
                out = work / f"{tool.name}-{run}"
                shutil.rmtree(out, ignore_errors=True)
                if spec.rate_limit:  # let the bucket refill after the harness's own reads
                    time.sleep((spec.burst or THROTTLE_BURST) / spec.rate_limit)
                cpu_before = sandbox.cpu_seconds()
                with observe(sandbox) as seen:
                    result = run_child(
                        tool.name,
                        run,
                        tool.argv(sandbox.base_url, out, window),
                        tool.env(sandbox.base_url),
                        work / "logs",
                    )
                cpu_after = sandbox.cpu_seconds()
                if cpu_before is not None and cpu_after is not None:
                    result.server_cpu_s = cpu_after - cpu_before
                served = seen()
                result.requests = {"total": served.total, "429": served.too_many}
                result.extra["requests_source"] = served.source
                if served.first_at is not None and served.last_at is not None:
                    result.extra["server_span_s"] = served.last_at - served.first_at
                if result.ok:
                    result.rows = count_parquet_rows(tool.rows_at(out))
                    for table in tool.other_tables:
                        result.extra[f"rows_{table}"] = count_parquet_rows(out / table)
                    if result.rows != expected:
                        result.ok = False
                        result.error = f"wrote {result.rows} rows, the sandbox has {expected}"
                per_tool[tool.name].append(result)
                shutil.rmtree(out, ignore_errors=True)
                print("    " + describe_result(result))
    scenario["runs"] = {k: [asdict(r) for r in v] for k, v in per_tool.items()}
    scenario["medians"] = {k: summarize(v) for k, v in per_tool.items() if any(r.ok for r in v)}
    return scenario, per_tool


def describe_result(result: ChildResult) -> str:
    if not result.ok:
        return f"{result.tool} run {result.run}: FAILED {result.error}"
    inner = f", inner {result.inner_s:.2f} s" if result.inner_s is not None else ""
    server = f", server CPU {result.server_cpu_s:.2f} s" if result.server_cpu_s is not None else ""
    if result.requests:
        server += f", {result.requests['total']} requests ({result.requests['429']} x 429)"
    load = f", load {result.load_1m:.2f}" if result.load_1m is not None else ""
    return (
        f"{result.tool} run {result.run}: {result.wall_s:.2f} s wall{inner}, "
        f"CPU {result.user_s + result.sys_s:.2f} s, peak RSS {result.max_rss_mib:.0f} MiB, "
        f"{result.rows} rows{server}{load}"
    )


def summarize(results: Sequence[ChildResult]) -> dict[str, float | None]:
    good = [r for r in results if r.ok]
    return {
        "wall_s": median([r.wall_s for r in good]),
        "inner_s": median([r.inner_s for r in good if r.inner_s is not None]),
        "cpu_s": median([r.user_s + r.sys_s for r in good]),
        "max_rss_mib": median([r.max_rss_mib for r in good]),
        "server_cpu_s": median([r.server_cpu_s for r in good if r.server_cpu_s is not None]),
        "cpu_s_per_10k": median(
            [(r.user_s + r.sys_s) * CPU_PER_BOOKINGS / r.rows for r in good if r.rows]
        ),
        "load_1m": median([r.load_1m for r in good if r.load_1m is not None]),
        "runs_ok": len(good),
    }


def paired_ratio(
    scenario: Mapping[str, object], slower: str, faster: str, key: str = "wall_s"
) -> float | None:
    """Median over runs of key(slower, run i) / key(faster, run i): paired, interleaved runs."""
    runs = scenario.get("runs")
    if not isinstance(runs, Mapping):
        return None
    a = {r["run"]: r for r in runs.get(slower, []) if r["ok"]}
    b = {r["run"]: r for r in runs.get(faster, []) if r["ok"]}
    ratios = [
        a[i][key] / b[i][key]
        for i in sorted(a.keys() & b.keys())
        if a[i].get(key) is not None and b[i].get(key)
    ]
    return median(ratios)


def extract_scenario(ctx: Context, latency_ms: float) -> dict[str, object]:
    spec = SandboxSpec(
        bookings=ctx.sizes.extract_bookings, latency_ms=latency_ms, anchor=ctx.anchor
    )
    tools = [ours_lib_tool(), ours_cli_tool(), NAIVE_TOOL, DLT_TOOL]
    name = f"extract_{int(latency_ms)}ms"
    scenario, _ = measure_tools(ctx, name, spec, tools, ctx.sizes.runs)
    scenario["ratios"] = {
        f"{other}/{ours}": paired_ratio(scenario, other, ours)
        for ours in (OURS_LIB, OURS_CLI)
        for other in (NAIVE, DLT)
    }
    # The same with imports and interpreter start excluded (the tools' own timers): informative.
    scenario["ratios_inner"] = {
        f"{other}/{OURS_LIB}": paired_ratio(scenario, other, OURS_LIB, "inner_s")
        for other in (NAIVE, DLT)
    }
    return scenario


def memory_scenario(ctx: Context) -> dict[str, object]:
    if ctx.sizes.memory_bookings is None:
        return {"skipped": {OURS_LIB: "skipped in --quick"}}
    big = SandboxSpec(bookings=ctx.sizes.memory_bookings, anchor=ctx.anchor)
    scenario, _ = measure_tools(ctx, "memory", big, [ours_lib_tool()], ctx.sizes.runs)
    small_rss = _median_of(ctx.results.get("extract_0ms"), OURS_LIB, "max_rss_mib")
    if small_rss is None:  # extract_0ms was not run (or failed): measure the 50k point here
        small = SandboxSpec(bookings=ctx.sizes.extract_bookings, anchor=ctx.anchor)
        scenario["small"], _ = measure_tools(ctx, "memory_small", small, [ours_lib_tool()], 1)
        small_rss = _median_of(scenario["small"], OURS_LIB, "max_rss_mib")
    big_rss = _median_of(scenario, OURS_LIB, "max_rss_mib")
    scenario["peak_rss_mib"] = {"small": small_rss, "big": big_rss}
    scenario["bookings"] = {"small": ctx.sizes.extract_bookings, "big": ctx.sizes.memory_bookings}
    scenario["memory_ratio"] = big_rss / small_rss if big_rss and small_rss else None
    return scenario


def _median_of(scenario: object, tool: str, key: str) -> float | None:
    if not isinstance(scenario, Mapping):
        return None
    medians = scenario.get("medians")
    if not isinstance(medians, Mapping) or tool not in medians:
        return None
    value = medians[tool].get(key)
    return float(value) if isinstance(value, int | float) else None


def throttled_scenario(ctx: Context) -> dict[str, object]:
    spec = SandboxSpec(
        bookings=ctx.sizes.throttled_bookings,
        rate_limit=THROTTLE_RPS,
        burst=THROTTLE_BURST,
        anchor=ctx.anchor,
    )
    tool = ours_lib_tool(rate=THROTTLE_RPS, burst=THROTTLE_BURST)
    scenario, results = measure_tools(ctx, "throttled", spec, [tool], ctx.sizes.runs)
    shares, too_many, rates = [], [], []
    for run in results.get(OURS_LIB, []):
        if not run.ok or not run.requests or not run.requests["total"]:
            continue
        total, n429 = run.requests["total"], run.requests["429"]
        span = run.extra.get("server_span_s")
        # Server timestamps: n requests span n - 1 intervals. Otherwise the in-process time.
        seconds = run.inner_s or run.wall_s
        ok_requests = total - n429
        rate = (ok_requests - 1) / span if isinstance(span, float) else ok_requests / seconds
        rates.append(rate)
        shares.append(rate / THROTTLE_RPS)
        too_many.append(n429 / total)
    scenario["achieved_rps"] = median(rates)
    scenario["share_of_limit"] = median(shares)
    scenario["share_429"] = median(too_many)
    scenario["rate_basis"] = (
        "non-429 requests over the first-to-last request span seen by the sandbox when it logs"
        " timestamps, else over the seconds inside extract_range (imports excluded)"
    )
    return scenario


def contacts_scenario(ctx: Context) -> dict[str, object]:
    spec = SandboxSpec(
        bookings=ctx.sizes.contacts_bookings, latency_ms=SLOW_LATENCY_MS, anchor=ctx.anchor
    )
    tool = ours_lib_tool(tables="bookings,booking_contacts")
    scenario, results = measure_tools(ctx, "contacts", spec, [tool], ctx.sizes.runs)
    good = [run for run in results.get(OURS_LIB, []) if run.ok and run.requests]
    scenario["requests_per_s"] = median(
        [run.requests["total"] / (run.inner_s or run.wall_s) for run in good if run.requests]
    )
    contact_rows = [run.extra.get("rows_booking_contacts") for run in good]
    scenario["booking_contacts_rows"] = [r for r in contact_rows if r is not None]
    return scenario


def dagster_scenario(ctx: Context) -> dict[str, object]:
    """The daily refresh through Dagster (benchmarks/dagster_refresh.py, one run: it seeds a
    day's state first, so a run is minutes): requests, wall time, 429s, load."""
    argv = [
        PYTHON,
        str(BENCH / "dagster_refresh.py"),
        "--bookings",
        str(ctx.sizes.dagster_bookings),
    ]
    child = run_child("dagster_refresh", 1, argv, child_env(), WORK / "dagster")
    if not child.ok:
        return {"error": child.error, "wall_s": child.wall_s}
    stdout = (WORK / "dagster" / "dagster_refresh-1.out").read_text(encoding="utf-8")
    summary = _last_json_line(stdout)
    if summary is None:
        return {"error": "dagster_refresh.py printed no JSON summary"}
    return {**summary, "harness_wall_s": child.wall_s}


def writeback_scenario(ctx: Context) -> dict[str, object]:
    if ctx.status.get("apply"):
        return {"skipped": {"apply": ctx.status["apply"]}}
    rows = ctx.sizes.writeback_rows
    work = ctx.work / "writeback"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = SandboxSpec(
        bookings=ctx.sizes.writeback_pool,
        rate_limit=THROTTLE_RPS,
        burst=THROTTLE_BURST,
        anchor=ctx.anchor,
        journal=work / "journal.jsonl",
    )
    scenario: dict[str, object] = {"sandbox": spec.settings(), "rows": rows, "action": "cancel"}
    runs: list[ChildResult] = []
    for run in range(1, ctx.sizes.runs + 1):
        # A fresh sandbox per run: the cancels of run 1 would make run 2's change set invalid.
        with Sandbox(spec) as sandbox:
            uids = open_booking_uids(sandbox, rows, ctx.anchor)
            changeset = work / f"changes-{run}.csv"
            write_cancel_changeset(changeset, uids, run)
            time.sleep(THROTTLE_BURST / THROTTLE_RPS)  # let the harness's own reads refill
            argv = [PYTHON, "-m", "jicoo_connector.cli", "apply", str(changeset)]
            argv += ["--ledger", str(work / f"ledger-{run}.sqlite")]
            # Keep the apply_log table out of the repo's data/ folder.
            argv += ["--apply-log", str(work / f"apply_log-{run}")]
            env = child_env(
                JICOO_BASE_URL=sandbox.base_url,
                JICOO_API_KEY=SANDBOX_KEY,
                JICOO_RATE_LIMIT=str(THROTTLE_RPS),
                JICOO_BURST=str(THROTTLE_BURST),
            )
            cpu_before = sandbox.cpu_seconds()
            with observe(sandbox) as seen:
                result = run_child("apply", run, argv, env, work / "logs")
            cpu_after = sandbox.cpu_seconds()
            if cpu_before is not None and cpu_after is not None:
                result.server_cpu_s = cpu_after - cpu_before
            served = seen()
            span = (
                served.last_at - served.first_at
                if served.first_at is not None and served.last_at is not None
                else None
            )
            reads = served.by_method.get("GET", 0)
            writes = served.by_method.get("POST", 0) + served.by_method.get("PATCH", 0)
            floor = (reads + writes) / THROTTLE_RPS
            result.requests = {"total": served.total, "429": served.too_many}
            result.extra = {
                "reads": reads,
                "writes": writes,
                "floor_s": floor,
                "ratio_to_floor": result.wall_s / floor if floor else None,
                # First to last request the sandbox saw: start-up and imports excluded (info).
                "server_span_s": span,
                "span_ratio_to_floor": span / floor if floor and span else None,
                "journal_lines": count_lines(work / "journal.jsonl"),
            }
            result.rows = len(uids)
            if result.ok and writes < len(uids):
                result.ok = False
                result.error = f"only {writes} writes reached the sandbox for {len(uids)} rows"
            runs.append(result)
            print("    " + describe_writeback(result))
    scenario["runs"] = {"apply": [asdict(r) for r in runs]}
    if any(r.ok for r in runs):
        scenario["medians"] = {"apply": summarize(runs)}
    ratios = [r.extra["ratio_to_floor"] for r in runs if r.ok and r.extra.get("ratio_to_floor")]
    scenario["ratio_to_floor"] = median([float(x) for x in ratios if isinstance(x, float)])
    return scenario


def describe_writeback(result: ChildResult) -> str:
    if not result.ok:
        return f"apply run {result.run}: FAILED {result.error}"
    extra = result.extra
    return (
        f"apply run {result.run}: {result.wall_s:.1f} s wall, {extra['reads']} reads + "
        f"{extra['writes']} writes, floor {extra['floor_s']:.1f} s, "
        f"ratio {extra['ratio_to_floor'] or float('nan'):.3f} "
        f"(server span {extra['span_ratio_to_floor'] or float('nan'):.3f}), {result.requests}"
    )


def count_lines(path: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return 0


def open_booking_uids(sandbox: Sandbox, wanted: int, anchor: dt.date) -> list[str]:
    """Open bookings to cancel: future ones first (safest to change), then any open one."""
    tomorrow = dt.datetime.combine(anchor + dt.timedelta(days=1), dt.time(), dt.UTC)
    future = {"startedAt": tomorrow.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    uids: list[str] = []
    with sandbox.client() as client:
        for params in (future, {}):
            page = 1
            while len(uids) < wanted:
                query = {"status": "open", "perPage": "100", "page": str(page), **params}
                body = get_with_retry(client, "/v1/bookings", query)
                data = body.get("data")
                if not isinstance(data, list) or not data:
                    break
                for booking in data:
                    uid = booking.get("uid") if isinstance(booking, dict) else None
                    if isinstance(uid, str) and uid not in uids and booking.get("status") == "open":
                        uids.append(uid)
                page += 1
            if len(uids) >= wanted:
                break
    if len(uids) < wanted:
        raise SandboxUnavailableError(f"only {len(uids)} open bookings for {wanted} cancels")
    return uids[:wanted]


def write_cancel_changeset(path: Path, uids: Sequence[str], run: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["change_id", "action", "booking_uid", "new_started_at", "time_zone"])
        for index, uid in enumerate(uids):
            writer.writerow([f"bench-{run}-{index:05d}", "cancel", uid, "", ""])


# ---------------------------------------------------------------------------------------------
# Targets and the report


@dataclass
class Target:
    scenario: str
    measure: str
    value: float | None
    op: str
    threshold: float
    note: str = ""


def targets(results: Mapping[str, Mapping[str, object]]) -> list[Target]:
    found: list[Target] = []
    for latency, vs_dlt, vs_naive in (
        (0, TARGET_SPEEDUP_0MS_DLT, None),
        (50, TARGET_SPEEDUP_50MS_DLT, TARGET_SPEEDUP_50MS_NAIVE),
    ):
        scenario = results.get(f"extract_{latency}ms")
        if scenario is None:
            continue
        ratios = scenario.get("ratios", {})
        assert isinstance(ratios, Mapping)
        for ours in (OURS_LIB, OURS_CLI):
            for other, threshold in ((DLT, vs_dlt), (NAIVE, vs_naive)):
                if threshold is None:
                    continue
                found.append(
                    Target(
                        f"extract_{latency}ms",
                        f"{ours} speed-up over {other} (wall, paired)",
                        ratios.get(f"{other}/{ours}"),
                        ">=",
                        threshold,
                    )
                )
    if (memory := results.get("memory")) is not None:
        value = memory.get("memory_ratio")
        found.append(
            Target(
                "memory",
                "peak RSS {big} / {small} bookings".format(
                    big=_bookings_label(memory, "big"), small=_bookings_label(memory, "small")
                ),
                float(value) if isinstance(value, float) else None,
                "<=",
                TARGET_MEMORY_RATIO,
            )
        )
    if (throttled := results.get("throttled")) is not None:
        found += _scenario_targets(
            "throttled",
            throttled,
            ("achieved req/s / 10", "share_of_limit", ">=", TARGET_THROTTLE_SHARE),
            ("429s / requests", "share_429", "<", TARGET_THROTTLE_429_SHARE),
        )
    if (dagster := results.get("dagster")) is not None:
        alone, both = dagster.get("alone"), dagster.get("with_snapshots")
        for phase, measures in (
            (
                alone,
                [
                    ("requests / (listing pages + changed)", "request_ratio", "<=", 1.05),
                    ("wall / (requests / 10 rps)", "wall_ratio", "<=", 1.2),
                ],
            ),
            (both, [("429s / requests, daily + snapshots at once", "share_429", "<", 0.02)]),
        ):
            found += _scenario_targets(
                "dagster", phase if isinstance(phase, Mapping) else {}, *measures
            )
    if (writeback := results.get("writeback")) is not None:
        value = writeback.get("ratio_to_floor")
        found.append(
            Target(
                "writeback",
                "wall / ((reads + writes) / 10 rps)",
                float(value) if isinstance(value, float) else None,
                "<=",
                TARGET_WRITEBACK_RATIO,
            )
        )
    if (warehouse := results.get("warehouse")) is not None:
        found += _scenario_targets(
            "warehouse",
            warehouse,
            ("to_sql wall / jicoo load wall", "speedup", ">=", TARGET_WAREHOUSE_SPEEDUP),
            ("jicoo load / to_sql peak RSS", "rss_ratio", "<=", TARGET_WAREHOUSE_RSS_RATIO),
        )
    if (webhooks := results.get("webhooks")) is not None:
        found += _scenario_targets(
            "webhooks",
            webhooks,
            (
                "change -> row in Parquet, p95 s (1 change/s, daemon)",
                "freshness_p95_s",
                "<",
                TARGET_WEBHOOK_P95_S,
            ),
        )
    return found


def _scenario_targets(
    name: str, scenario: Mapping[str, object], *measures: tuple[str, str, str, float]
) -> list[Target]:
    """One target per (measure, key in the scenario's results, op, threshold)."""
    found = []
    for measure, key, op, threshold in measures:
        value = scenario.get(key)
        number = float(value) if isinstance(value, int | float) else None
        found.append(Target(name, measure, number, op, threshold))
    return found


def webhook_scenario(ctx: "Context") -> dict[str, object]:
    """benchmarks/webhook_freshness.py (also runnable alone): sandbox, receiver and daemon."""
    from webhook_freshness import run as run_freshness

    changes = WEBHOOK_CHANGES_QUICK if ctx.quick else WEBHOOK_CHANGES_FULL
    result = run_freshness(changes, interval_s=30)
    print(json.dumps(result, indent=2))
    return result


def target_met(target: Target) -> bool | None:
    if target.value is None:
        return None
    if target.op == ">=":
        return target.value >= target.threshold
    if target.op == "<=":
        return target.value <= target.threshold
    return target.value < target.threshold


def _bookings_label(scenario: Mapping[str, object], which: str) -> str:
    sizes = scenario.get("bookings")
    return f"{sizes.get(which):,}" if isinstance(sizes, Mapping) else "?"


QUICK_TARGETS_NOTE = (
    "Quick run: the targets are set for 50,000 bookings; at 5,000 fixed costs (interpreter "
    "start, the first one-day probe listing) weigh ten times more, so a NO here is a smoke "
    "reading, not a verdict. `make bench` judges them."
)


def markdown(
    results: Mapping[str, Mapping[str, object]], found: Sequence[Target], *, quick: bool = False
) -> str:
    lines = [
        "| scenario | tool | wall s | inner s | CPU s | CPU s / 10k bookings | peak RSS MiB "
        "| server CPU s | rows | load (1 min) |"
    ]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, scenario in results.items():
        medians = scenario.get("medians")
        if isinstance(medians, Mapping):
            for tool, m in medians.items():
                rows = _rows_of(scenario, tool)
                lines.append(
                    f"| {name} | {tool} | {_fmt(m['wall_s'])} | {_fmt(m['inner_s'])} | "
                    f"{_fmt(m['cpu_s'])} | {_fmt(m.get('cpu_s_per_10k'))} | "
                    f"{_fmt(m['max_rss_mib'], 0)} | {_fmt(m['server_cpu_s'])} | {rows} | "
                    f"{_fmt(m.get('load_1m'))} |"
                )
        skipped = scenario.get("skipped")
        if isinstance(skipped, Mapping):
            for tool, why in skipped.items():
                lines.append(f"| {name} | {tool} | — | — | — | — | — | — | {why} | — |")
        runs = scenario.get("runs")
        if isinstance(runs, Mapping):
            for tool, tool_runs in runs.items():
                for run in tool_runs:
                    if not run["ok"]:
                        lines.append(
                            f"| {name} | {tool} run {run['run']} | FAILED | | | | | | "
                            f"{run['error']} | |"
                        )
    lines += ["", "| scenario | speed-up | wall (targets) | in-process (info) |"]
    lines.append("|---|---|---:|---:|")
    for name, scenario in results.items():
        ratios, inner = scenario.get("ratios"), scenario.get("ratios_inner")
        if isinstance(ratios, Mapping):
            for pair, value in ratios.items():
                other = inner.get(pair) if isinstance(inner, Mapping) else None
                lines.append(f"| {name} | {pair} | {_fmt(value)} | {_fmt(other)} |")
    lines += ["", "| scenario | measure | value | target | met |", "|---|---|---:|---:|---|"]
    for target in found:
        met = target_met(target)
        shown = "n/a" if met is None else ("yes" if met else "NO")
        lines.append(
            f"| {target.scenario} | {target.measure} | {_fmt(target.value, 3)} | "
            f"{target.op} {target.threshold:g} | {shown} |"
        )
    if quick:
        lines += ["", QUICK_TARGETS_NOTE]
    return "\n".join(lines)


def _rows_of(scenario: Mapping[str, object], tool: str) -> str:
    runs = scenario.get("runs")
    if isinstance(runs, Mapping):
        rows = {run["rows"] for run in runs.get(tool, []) if run["ok"]}
        return ",".join(str(r) for r in sorted(rows, key=str))
    return ""


def _fmt(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


# ---------------------------------------------------------------------------------------------
# Warehouse loading


def _load_argv(url: str, root: Path, *extra: str) -> list[str]:
    argv = [PYTHON, "-m", "jicoo_connector.cli", "load", "--tables", "bookings"]
    return [*argv, "--warehouse-url", url, "--root", str(root), *extra]


def _postgres_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM bookings").fetchone()
    return int(row[0]) if row else 0


def warehouse_scenario(ctx: Context) -> dict[str, object]:
    """Bookings Parquet (extracted once from the sandbox, not measured) into PostgreSQL: `jicoo
    load --full` against pandas.DataFrame.to_sql on the same data and server, interleaved; then
    an incremental reload after a 3-day change against a full reload."""
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres_server import PostgresServer

    work = ctx.work / "warehouse"
    shutil.rmtree(work, ignore_errors=True)
    parquet = work / "parquet"
    spec = SandboxSpec(bookings=ctx.sizes.warehouse_bookings, anchor=ctx.anchor)
    window = Window.around(ctx.anchor)
    scenario: dict[str, object] = {
        "sandbox": spec.settings(),
        "tools": {
            OURS_LOAD: "jicoo load --tables bookings --full (ADBC COPY into a staging table, "
            "one-transaction merge)",
            PANDAS_TO_SQL: "benchmarks/pandas_to_sql.py: read_parquet, hosts to JSON text, "
            "to_sql(method='multi', chunksize=65535 // columns), SQLAlchemy + psycopg",
        },
        "postgres": "tests/support/postgres_server.py: the machine's pg_ctl (else the pgserver "
        "wheel's), fsync=off, one server for every run, a new database per run",
    }
    with Sandbox(spec) as sandbox:
        expected = sandbox.total_bookings()
        print(f"  sandbox {sandbox.base_url}: {expected} bookings; extracting them (not measured)")
        tool = ours_lib_tool()
        setup = run_child(
            "extract", 0, tool.argv(sandbox.base_url, parquet, window), tool.env(""), work / "logs"
        )
    rows = count_parquet_rows(parquet / "bookings")
    if not setup.ok or rows != expected:
        raise OSError(f"the warehouse scenario's extract wrote {rows} of {expected} rows")
    scenario["expected_rows"] = expected
    per_tool: dict[str, list[ChildResult]] = {OURS_LOAD: [], PANDAS_TO_SQL: []}
    with PostgresServer() as server:
        for run in range(1, ctx.sizes.warehouse_runs + 1):
            for name in (OURS_LOAD, PANDAS_TO_SQL):
                url = server.create_database(f"{name}_{run}")
                baseline = [PYTHON, str(BENCH / "pandas_to_sql.py"), "--root", str(parquet)]
                argv = (
                    _load_argv(url, parquet, "--full")
                    if name == OURS_LOAD
                    else [*baseline, "--url", url]
                )
                result = run_child(name, run, argv, child_env(), work / "logs")
                if result.ok:
                    result.rows = _postgres_rows(url)
                    if result.rows != expected:
                        result.ok = False
                        result.error = f"loaded {result.rows} rows, the Parquet has {expected}"
                per_tool[name].append(result)
                print("    " + describe_result(result))
        scenario["incremental"] = _incremental_vs_full(ctx, server, parquet, expected, work)
    scenario["runs"] = {k: [asdict(r) for r in v] for k, v in per_tool.items()}
    scenario["medians"] = {k: summarize(v) for k, v in per_tool.items() if any(r.ok for r in v)}
    scenario["ratios"] = {
        f"{PANDAS_TO_SQL}/{OURS_LOAD}": paired_ratio(scenario, PANDAS_TO_SQL, OURS_LOAD)
    }
    scenario["speedup"] = scenario["ratios"][f"{PANDAS_TO_SQL}/{OURS_LOAD}"]
    scenario["rss_ratio"] = paired_ratio(scenario, OURS_LOAD, PANDAS_TO_SQL, "max_rss_mib")
    shutil.rmtree(work, ignore_errors=True)
    return scenario


def _incremental_vs_full(
    ctx: Context, server: Any, parquet: Path, expected: int, work: Path
) -> dict[str, object]:
    """On a loaded database: 3 day partitions re-written (as a re-extract does), then `jicoo
    load` (incremental) and `jicoo load --full`, each measured."""
    sys.path.insert(0, str(ROOT))
    from jicoo_connector.extract import TABLES
    from jicoo_connector.storage import ParquetStore

    bookings = TABLES["bookings"].spec
    url = server.create_database("incremental")
    first = run_child("initial_load", 0, _load_argv(url, parquet), child_env(), work / "logs")
    store = ParquetStore(parquet)
    days = [ctx.anchor + dt.timedelta(days=n) for n in range(WAREHOUSE_CHANGED_DAYS)]
    changed = 0
    for day in days:
        data = store.read_partition(bookings, day)
        store.write_partition(bookings, day, data.to_batches())
        changed += data.num_rows
    out: dict[str, object] = {
        "changed_days": [d.isoformat() for d in days],
        "changed_rows": changed,
    }
    for name, extra in (("incremental", ()), ("full", ("--full",))):
        results = []
        for run in range(1, ctx.sizes.runs + 1):
            if name == "incremental" and run > 1:  # the same 3-day change again
                for day in days:
                    data = store.read_partition(bookings, day)
                    store.write_partition(bookings, day, data.to_batches())
            result = run_child(
                f"reload_{name}", run, _load_argv(url, parquet, *extra), child_env(), work / "logs"
            )
            result.rows = _postgres_rows(url)
            result.ok = result.ok and first.ok and result.rows == expected
            results.append(result)
            print("    " + describe_result(result))
        out[name] = summarize(results)
    incremental, full = out["incremental"], out["full"]
    if isinstance(incremental, dict) and isinstance(full, dict) and incremental.get("wall_s"):
        out["full_over_incremental"] = (full.get("wall_s") or 0) / incremental["wall_s"]
    return out


# ---------------------------------------------------------------------------------------------
# Machine facts


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
    versions: dict[str, str | None] = {}
    for package in (
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
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    if BENCH_PYTHON.exists():
        probe = subprocess.run(
            [str(BENCH_PYTHON), "-c", "import dlt; print(dlt.__version__)"],
            capture_output=True,
            text=True,
            env=child_env(),
            check=False,
        )
        versions["dlt"] = probe.stdout.strip() or None
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
        "versions": versions,
        "git_commit": commit or None,
    }


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
    loaded = _last_json_line(probe.stdout)
    return loaded if loaded is not None else {"error": _last_line(probe.stderr)}


def warm_up(status: Mapping[str, str | None]) -> None:
    """Import every tool once so the first measured run does not pay for cold .pyc caches."""
    subprocess.run(
        [PYTHON, "-c", "import httpx, pandas, pyarrow.parquet, jicoo_connector.cli"],
        cwd=ROOT,
        check=False,
        capture_output=True,
    )
    if status.get(OURS_LIB) is None:
        subprocess.run(
            [PYTHON, "-c", "import jicoo_connector.extract"],
            cwd=ROOT,
            check=False,
            capture_output=True,
        )
    if status.get(DLT) is None:
        subprocess.run(
            [
                str(BENCH_PYTHON),
                "-c",
                "import dlt; from dlt.sources.rest_api import rest_api_source",
            ],
            cwd=ROOT,
            env=child_env(),
            check=False,
            capture_output=True,
        )


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="jicoo-connector benchmarks against the sandbox")
    parser.add_argument("--quick", action="store_true", help="5,000 bookings, 1 run, no 500k run")
    parser.add_argument("--runs", type=int, default=None, help="runs per tool (default 3; quick 1)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {SCENARIOS} (default all; --quick leaves out webhooks, "
        "which needs minutes of daemon time)",
    )
    parser.add_argument("--no-dlt", action="store_true", help="skip dlt runs")
    parser.add_argument(
        "--memory-bookings",
        type=int,
        default=None,
        help="size of the memory run (default 500,000; --quick skips it unless given)",
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args(argv)
    default = [s for s in SCENARIOS if not (args.quick and s == "webhooks")]
    chosen = [s.strip() for s in (args.only or ",".join(default)).split(",") if s.strip()]
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")

    base = QUICK if args.quick else FULL
    sizes = Sizes(
        **{
            **asdict(base),
            "runs": args.runs or base.runs,
            "warehouse_runs": args.runs or base.warehouse_runs,
            "memory_bookings": args.memory_bookings or base.memory_bookings,
        }
    )
    mode = "quick" if args.quick else "full"
    anchor = dt.datetime.now(dt.UTC).date()

    dlt_note: str | None = None
    if args.no_dlt:
        dlt_note = "skipped (--no-dlt)"
    elif args.quick:
        # --quick never installs anything: dlt runs only if the env is already there.
        dlt_note = None if dlt_env_ready() else "skipped in --quick: dlt env not set up"
    else:
        dlt_note = ensure_dlt_env() or (None if dlt_env_ready() else "dlt env is broken")

    status = available_tools()
    status[DLT] = dlt_note
    try:
        sandbox_process_class()
    except ImportError as exc:
        print(f"the sandbox is not available yet ({exc}): nothing to run")
        return 2
    for tool, why in status.items():
        if why:
            print(f"note: {tool}: {why}")
    warm_up(status)

    ctx = Context(sizes, args.quick, anchor, status, {}, WORK / mode)
    shutil.rmtree(ctx.work, ignore_errors=True)
    machine = machine_info()
    started = dt.datetime.now(dt.UTC)
    runners: dict[str, Callable[[], dict[str, object]]] = {
        "extract_0ms": lambda: extract_scenario(ctx, 0.0),
        "extract_50ms": lambda: extract_scenario(ctx, SLOW_LATENCY_MS),
        "memory": lambda: memory_scenario(ctx),
        "throttled": lambda: throttled_scenario(ctx),
        "contacts": lambda: contacts_scenario(ctx),
        "writeback": lambda: writeback_scenario(ctx),
        "warehouse": lambda: warehouse_scenario(ctx),
        "webhooks": lambda: webhook_scenario(ctx),
        "dagster": lambda: dagster_scenario(ctx),
    }
    for name in SCENARIOS:
        if name not in chosen:
            continue
        print(f"== {name} (load average {os.getloadavg()[0]:.2f})")
        scenario_started = time.perf_counter()
        try:
            ctx.results[name] = runners[name]()
        except (SandboxUnavailableError, httpx.HTTPError, OSError) as exc:
            print(f"  FAILED: {exc}")
            ctx.results[name] = {"error": str(exc)}
        ctx.results[name]["load_average_at_start"] = os.getloadavg()[0]
        ctx.results[name]["scenario_seconds"] = time.perf_counter() - scenario_started

    found = targets(ctx.results)
    report = {
        "date": started.isoformat(),
        "mode": mode,
        "machine": machine,
        "settings": {
            "sizes": asdict(sizes),
            "scenarios": chosen,
            "sandbox_key": SANDBOX_KEY,
            "seed": SANDBOX_SEED,
            "anchor_date": anchor.isoformat(),
            "open_client_rate_limit": OPEN_RATE_LIMIT,
            "open_client_burst": OPEN_BURST,
            "throttle_rps": THROTTLE_RPS,
            "throttle_burst": THROTTLE_BURST,
            "slow_latency_ms": SLOW_LATENCY_MS,
            "tool_status": status,
            "ours_defaults": library_defaults(),
            "apply": "jicoo apply defaults (--concurrency 4), cancels only, fresh sandbox per run",
            "dlt": "rest_api defaults: nested hosts -> child table, write_disposition replace",
            "wall_time": "child process start to reap (interpreter start and imports included)",
            "peak_rss": "ru_maxrss of the reaped child (os.wait4), MiB",
        },
        "scenarios": ctx.results,
        "targets": [{**asdict(t), "met": target_met(t)} for t in found],
    }
    out = args.out or RESULTS / f"{started.date().isoformat()}-{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print()
    print(markdown(ctx.results, found, quick=args.quick))
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
