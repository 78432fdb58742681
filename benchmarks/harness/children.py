"""One measured tool run: a child process reaped with ``os.wait4``, so that its wall time, CPU
time and peak RSS are its own and nobody else's."""

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from harness.base import CPU_PER_BOOKINGS, KIB, ROOT, median, spread

CHILD_TIMEOUT = 3600.0


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
    cpu_s: float = 0.0  # user + sys
    inner_s: float | None = None  # the tool's own timing, imports excluded, when it prints one
    rows: int | None = None
    server_cpu_s: float | None = None
    # From the sandbox's log: total, 429, listings (page 1 of a listing) and the pages' floor.
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
    result = ChildResult(
        tool=tool,
        run=run,
        ok=proc.returncode == 0,
        returncode=proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / KIB,  # Linux reports KiB
        load_1m=load_1m,
    )
    summary = last_json_line(out_path.read_text(encoding="utf-8", errors="replace"))
    seconds = summary.get("seconds") if summary is not None else None
    if isinstance(seconds, int | float):
        result.inner_s = float(seconds)
    if not result.ok:
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        result.error = f"exit {proc.returncode}: {_last_error(stderr)}"
    return result


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def last_json_line(text: str) -> dict[str, object] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            loaded = json.loads(line)
            if isinstance(loaded, dict):
                return loaded
    return None


def _last_error(stderr: str) -> str:
    # Exception groups draw boxes (|, +---); the last line naming an error says the most.
    lines = [line.strip(" |") for line in stderr.strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith(("+", "..."))]
    errors = [line for line in lines if "Error" in line]
    return (errors or lines or ["(no stderr)"])[-1][:300]


def count_parquet_rows(path: Path) -> int:
    if path.is_file():
        return int(pq.ParquetFile(path).metadata.num_rows)
    files = [p for p in path.rglob("*.parquet") if ".tmp-" not in p.name]
    return sum(int(pq.ParquetFile(p).metadata.num_rows) for p in files)


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
        f"CPU {result.cpu_s:.2f} s, peak RSS {result.max_rss_mib:.0f} MiB, "
        f"{result.rows} rows{server}{load}"
    )


def summarize(results: Sequence[ChildResult]) -> dict[str, float | None]:
    """Medians of the good runs, the spread of wall and CPU, and the load they ran under."""
    good = [r for r in results if r.ok]
    walls = [r.wall_s for r in good]
    cpus = [r.cpu_s for r in good]
    per_10k = [r.cpu_s * CPU_PER_BOOKINGS / r.rows for r in good if r.rows]
    loads = [r.load_1m for r in good if r.load_1m is not None]
    return {
        "wall_s": median(walls),
        "wall_s_min": min(walls, default=None),
        "wall_s_max": max(walls, default=None),
        "wall_spread": spread(walls),
        "inner_s": median([r.inner_s for r in good if r.inner_s is not None]),
        "cpu_s": median(cpus),
        "cpu_s_min": min(cpus, default=None),
        "cpu_s_max": max(cpus, default=None),
        "cpu_spread": spread(cpus),
        "cpu_s_per_10k": median(per_10k),
        "max_rss_mib": median([r.max_rss_mib for r in good]),
        "server_cpu_s": median([r.server_cpu_s for r in good if r.server_cpu_s is not None]),
        "requests": median([r.requests["total"] for r in good if r.requests]),
        "load_1m": median(loads),
        "load_1m_max": max(loads, default=None),
        "runs_ok": len(good),
    }
