"""Where an extract spends its CPU: one extract against the sandbox, sampled thread by thread.

The extract runs as its own process (`jicoo extract`, the CLI with its progress bar, or
``extract_range`` through ``benchmarks/ours.py``) under a sampler that starts before anything
is imported: every few milliseconds it reads each thread's CPU time from the kernel
(``/proc/self/task/<tid>/schedstat``, nanoseconds) and charges what the thread used since the
last look to the Python stack it is in now. So the figures are CPU actually used, whatever else
runs on the machine, and threads without Python (Arrow's own) are counted too. Each stack is
then charged to what the code was doing (its innermost frame that belongs to a known part: the
HTTP client, the event loop, JSON decoding, conversion to Arrow, splitting into days, the
quality checks, Parquet writing, the progress bar; imports win whenever one is on the stack).
The total is the process's own CPU from ``wait4``; what the sampler missed (interpreter start
before it, the exit after it) is shown apart.

    .venv/bin/python benchmarks/profile_extract.py                      # 50,000 bookings, CLI
    .venv/bin/python benchmarks/profile_extract.py --path library --bookings 1000000
    .venv/bin/python benchmarks/profile_extract.py --base-url http://127.0.0.1:8765  # a sandbox
    .venv/bin/python benchmarks/profile_extract.py --clock wall --lines 25

``--clock cpu`` (the default) charges CPU time; ``--clock wall`` charges the main thread's
elapsed time, waiting included.
"""

import argparse
import collections
import datetime as dt
import os
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, FrameType

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SANDBOX_KEY = "sk_test_sandbox"
# The sandbox spreads bookings over [anchor - 60 d, anchor + 30 d]; the window holds them all.
PAST_DAYS = 62
FUTURE_DAYS = 32
OPEN_RATE_LIMIT = "10000"
OPEN_BURST = "1000"
PER_10K = 10_000
SAMPLE_EVERY_S = 0.02
_TASKS = "/proc/self/task"
NS = 1_000_000_000
# What the process does before the extract's own code: kept apart from the parts below.
IMPORTS = "startup and imports"
IDLE = "waiting (event loop idle)"
STARTED = "interpreter start (before the sampler)"
EXIT = "interpreter exit (after the sampler)"
SAMPLER = "the sampler itself"
UNSEEN = "threads too short to sample (Arrow's), rounding"
OTHER = "other"

# (part, substrings of a frame "function (file:line)"), tried from the innermost frame out;
# the first frame that matches names the part. Arrow's compute and array code is charged to
# whichever of our parts called it.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("progress bar (tqdm)", ("tqdm/",)),
    ("quality checks", ("jicoo_connector/quality.py",)),
    (
        "Parquet writing (incl. fsync)",
        ("jicoo_connector/storage.py", "jicoo_connector/atomic.py", "pyarrow/parquet/"),
    ),
    ("splitting pages into days", ("extract/catalog/bookings.py",)),
    (
        "JSON decoding and conversion to Arrow",
        ("arrow_envelope.py", "jicoo_connector/pages.py", "jicoo_connector/tables.py", "orjson"),
    ),
    ("paging checks", ("client/_paginate.py", "client/_report.py")),
    (
        "HTTP client (httpx, httpcore, h11, anyio, ours)",
        ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "jicoo_connector/client/"),
    ),
    (
        "event loop, sockets, threads",
        ("asyncio/", "selectors.py", "socket.py", "concurrent/futures/", "threading.py"),
    ),
    ("run loop and results", ("jicoo_connector/extract/",)),
    ("CLI, settings", ("jicoo_connector/cli.py", "jicoo_connector/config.py", "ours.py")),
)
# A sample of the main thread with no Python frame: the interpreter starting or finalizing.
NATIVE_MAIN = "interpreter start and exit"
# Threads that never run Python: Arrow's own (its JSON reader starts one per call).
NATIVE_THREADS = "native threads (Arrow's)"


def part_of(frames: Sequence[str], *, idle: bool) -> str:
    """The part one sample (root-first frames) belongs to."""
    if any("_find_and_load" in frame for frame in frames):
        return IMPORTS
    if not frames:
        return NATIVE_MAIN
    if idle and "select (selectors.py" in frames[-1]:
        return IDLE
    for frame in reversed(frames):
        for name, needles in PARTS:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


# ---------------------------------------------------------------------------------------------
# The sampler, inside the profiled process


Stack = tuple[tuple[CodeType, int], ...]


def _stack(frame: FrameType | None) -> Stack:
    """A stack innermost first, as (code, line) pairs: cheap to take, formatted once at the end."""
    stack = []
    while frame is not None:
        stack.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return tuple(stack)


def _format(stack: Stack) -> list[str]:
    """Root first, each frame as "function (file:line)"."""
    return [f"{code.co_name} ({code.co_filename}:{line})" for code, line in reversed(stack)]


def _thread_cpu_ns() -> dict[int, int]:
    """CPU time of every thread of this process, by native id (the kernel's schedstat)."""
    found: dict[int, int] = {}
    for task in os.listdir(_TASKS):  # noqa: PTH208 - a hot loop: no Path objects
        try:
            with open(f"{_TASKS}/{task}/schedstat", "rb") as stat:  # noqa: PTH123
                found[int(task)] = int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return found


class Sampler:
    """Charges each thread's CPU (or the main thread's wall time) since the last look to the
    stack the thread is in now."""

    def __init__(self, clock: str) -> None:
        self.clock = clock
        self.charged: collections.Counter[tuple[str, Stack]] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profile-sampler", daemon=True)
        self._me = 0
        self.own_ns = 0
        self.started_us = 0

    def start(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.started_us = int((usage.ru_utime + usage.ru_stime) * 1e6)
        self._thread.start()

    def stop(self, out: Path) -> None:
        self._stop.set()
        self._thread.join()
        lines = [
            f"{';'.join([thread, *_format(stack)])} {ns // 1000}"
            for (thread, stack), ns in self.charged.items()
            if ns >= 1000
        ]
        # Comments: the window the samples cover, and what the sampler itself used.
        lines += [f"# {name} {value}" for name, value in self.totals().items()]
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def totals(self) -> dict[str, int]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "process_cpu_us_at_start": self.started_us,
            "process_cpu_us_at_stop": int((usage.ru_utime + usage.ru_stime) * 1e6),
            "sampler_cpu_us": self.own_ns // 1000,
        }

    def _run(self) -> None:
        self._me = threading.get_native_id()
        last_cpu = _thread_cpu_ns()
        last_wall = time.perf_counter_ns()
        while not self._stop.wait(SAMPLE_EVERY_S):
            if self.clock == "wall":
                now = time.perf_counter_ns()
                self._charge_wall(now - last_wall)
                last_wall = now
            else:
                cpu = _thread_cpu_ns()
                self._charge_cpu({tid: ns - last_cpu.get(tid, 0) for tid, ns in cpu.items()})
                last_cpu = cpu
        self.own_ns = _thread_cpu_ns().get(self._me, 0)

    def _charge_cpu(self, used: dict[int, int]) -> None:
        threads = {t.native_id: t for t in threading.enumerate()}
        frames = sys._current_frames()
        for tid, ns in used.items():
            if ns <= 0 or tid == self._me:
                continue
            thread = threads.get(tid)
            ident = thread.ident if thread is not None else None
            name = thread.name if thread is not None else "native"
            stack = _stack(frames.get(ident)) if ident is not None else ()
            self.charged[(f"thread ({tid}): {name}", stack)] += ns

    def _charge_wall(self, ns: int) -> None:
        main = threading.main_thread()
        stack = _stack(sys._current_frames().get(main.ident or 0))
        self.charged[(f"thread ({main.native_id}): MainThread", stack)] += ns


def child(clock: str, out: Path, mode: str, argv: list[str]) -> None:
    """Run the target (a module or a script, with its arguments) under the sampler."""
    sampler = Sampler(clock)
    sampler.start()
    sys.argv = argv
    try:
        if mode == "module":
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(argv[0], run_name="__main__")
    finally:
        sampler.stop(out)


# ---------------------------------------------------------------------------------------------
# Reading the samples


def read_totals(raw: Path) -> dict[str, int]:
    """The sampler's own figures (its comment lines)."""
    totals = {}
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# "):
            _, name, value = line.split()
            totals[name] = int(value)
    return totals


def read_samples(raw: Path, *, main_only: bool) -> collections.Counter[str]:
    """Microseconds charged, by part (the first frame of a stack names its thread)."""
    parts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# "):
            continue
        stack, _, amount = line.rpartition(" ")
        if not stack or not amount.isdigit():
            continue
        thread, *frames = stack.split(";")
        if main_only and "MainThread" not in thread:
            continue
        part = part_of(frames, idle=main_only)
        if not frames and "MainThread" not in thread:
            part = NATIVE_THREADS
        parts[part] += int(amount)
    return parts


def top_lines(raw: Path, count: int) -> list[tuple[int, str]]:
    """The innermost frames charged most."""
    lines: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, amount = line.rpartition(" ")
        if stack and amount.isdigit() and not line.startswith("# "):
            lines[_short(stack.rsplit(";", 1)[-1])] += int(amount)
    return [(n, frame) for frame, n in lines.most_common(count)]


def _short(frame: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        head, found, tail = frame.partition(marker)
        if found:
            name = head.split(" (", 1)[0]
            return f"{name} ({tail.split('/', 1)[-1] if marker == '/lib/python3' else tail}"
    return frame


# ---------------------------------------------------------------------------------------------
# One sampled extract, and the report


def _target_argv(path: str, base_url: str, out: Path, window: Sequence[str]) -> list[str]:
    if path == "cli":
        argv = ["module", "jicoo_connector.cli", "extract", "--tables", "bookings"]
        return [*argv, "--out", str(out), "--start", window[0], "--end", window[1]]
    argv = ["script", str(BENCH / "ours.py"), "--base-url", base_url, "--out", str(out)]
    argv += ["--start", window[0], "--end", window[1]]
    return [*argv, "--rate-limit", OPEN_RATE_LIMIT, "--burst", OPEN_BURST]


def sampled_extract(
    path: str, clock: str, base_url: str, work: Path, window: Sequence[str]
) -> tuple[float, float, Path]:
    """(CPU s, wall s, samples file) of one extract run under the sampler."""
    raw = work / "samples.txt"
    env = {
        **os.environ,
        "JICOO_BASE_URL": base_url,
        "JICOO_API_KEY": SANDBOX_KEY,
        "JICOO_RATE_LIMIT": OPEN_RATE_LIMIT,
        "JICOO_BURST": OPEN_BURST,
    }
    argv = [sys.executable, str(Path(__file__)), "--child", str(raw), "--clock", clock, "--"]
    argv += _target_argv(path, base_url, work / "out", window)
    started = time.perf_counter()
    with (work / "stderr.log").open("wb") as stderr:
        target = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(target.pid, 0)
    wall = time.perf_counter() - started
    target.returncode = os.waitstatus_to_exitcode(status)
    if target.returncode:
        tail = (work / "stderr.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"the extract failed (exit {target.returncode}):\n{tail}")
    return usage.ru_utime + usage.ru_stime, wall, raw


def report(args: argparse.Namespace, base_url: str, bookings: int) -> None:
    anchor = dt.date.fromisoformat(args.anchor)
    window = (
        (anchor - dt.timedelta(days=PAST_DAYS)).isoformat(),
        (anchor + dt.timedelta(days=FUTURE_DAYS)).isoformat(),
    )
    load = os.getloadavg()[0]
    (BENCH / "work").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profile-", dir=BENCH / "work") as temp:
        work = Path(temp)
        cpu, wall, raw = sampled_extract(args.path, args.clock, base_url, work, window)
        parts = read_samples(raw, main_only=args.clock == "wall")
        lines = top_lines(raw, args.lines)
        if args.raw is not None:
            shutil.copyfile(raw, args.raw)
        totals = read_totals(raw)
    seconds = {name: us / 1e6 for name, us in parts.items()}
    what = "CPU" if args.clock == "cpu" else "wall"
    whole = cpu if args.clock == "cpu" else wall
    if args.clock == "cpu":
        before = totals["process_cpu_us_at_start"] / 1e6
        sampled = totals["process_cpu_us_at_stop"] / 1e6 - before
        seconds[STARTED] = before
        seconds[SAMPLER] = totals["sampler_cpu_us"] / 1e6
        # Threads that start and end between two looks (Arrow's JSON reader starts one per
        # call) are seen by the process total only.
        seconds[UNSEEN] = max(sampled - sum(seconds.values()) + before, 0.0)
        seconds[EXIT] = max(cpu - before - sampled, 0.0)
    else:
        seconds[EXIT] = max(whole - sum(seconds.values()), 0.0)
    print(
        f"\n{args.path} path, {bookings:,} bookings at 0 ms: {cpu:.2f} s CPU "
        f"({cpu * PER_10K / bookings:.3f} s per 10,000 bookings), {wall:.2f} s wall; "
        f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n"
    )
    print(f"| where the {what} goes | {what} s | share | {what} s per 10,000 bookings |")
    print("|---|---:|---:|---:|")
    for name, part_s in sorted(seconds.items(), key=lambda item: -item[1]):
        print(
            f"| {name} | {part_s:.2f} | {part_s / whole:.0%} | {part_s * PER_10K / bookings:.3f} |"
        )
    if lines:
        print(f"\nthe {len(lines)} lines charged most:")
        for us, frame in lines:
            print(f"  {us / 1e6:6.3f} s  {frame}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bookings", type=int, default=50_000, help="sandbox size (50,000)")
    parser.add_argument("--path", choices=("cli", "library"), default="cli")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--base-url", default=None, help="a running sandbox (else one is started)")
    parser.add_argument(
        "--anchor",
        default=dt.datetime.now(dt.UTC).date().isoformat(),
        help="the sandbox's anchor day (default today, as a sandbox started here uses)",
    )
    parser.add_argument("--lines", type=int, default=0, help="also list the N lines charged most")
    parser.add_argument("--raw", type=Path, default=None, help="keep the samples here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("target", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.clock, args.child, args.target[0], args.target[1:])
        return 0
    if args.base_url is not None:
        report(args, args.base_url.rstrip("/"), _total(args.base_url))
        return 0
    from jicoo_sandbox import SandboxProcess

    with SandboxProcess(
        bookings=args.bookings, anchor_date=args.anchor, start_timeout_s=900
    ) as sandbox:
        report(args, sandbox.base_url.rstrip("/"), args.bookings)
    return 0


def _total(base_url: str) -> int:
    import httpx

    answer = httpx.get(
        f"{base_url.rstrip('/')}/v1/bookings",
        params={"perPage": 1},
        headers={"X-Jicoo-Api-Key": SANDBOX_KEY},
    )
    answer.raise_for_status()
    return int(answer.json()["totalCount"])


if __name__ == "__main__":
    sys.exit(main())
