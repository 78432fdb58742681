"""Where an extract spends its CPU: one extract against the sandbox, sampled by py-spy.

The extract runs as its own process (`jicoo extract`, the CLI with its progress bar, or
``extract_range`` through ``benchmarks/ours.py``); py-spy samples every thread of it from the
outside, so the code runs at full speed. Each sample is charged to what the code was doing
(its innermost frame that belongs to a known part: the HTTP client, the event loop, JSON
decoding, conversion to Arrow, splitting into days, the quality checks, Parquet writing, the
progress bar; imports win whenever one is on the stack), and the shares are applied to the
process's own CPU (user + sys from ``wait4``).

    .venv/bin/python benchmarks/profile_extract.py                      # 50,000 bookings, CLI
    .venv/bin/python benchmarks/profile_extract.py --path library --bookings 1000000
    .venv/bin/python benchmarks/profile_extract.py --base-url http://127.0.0.1:8765  # a sandbox
    .venv/bin/python benchmarks/profile_extract.py --clock wall --lines 25

``--clock cpu`` (the default) counts the samples of threads that were running; ``--clock wall``
counts the main thread's samples, waiting included. py-spy comes from
``benchmarks/requirements-profile.txt``, installed on first use into
``benchmarks/.venv-profile`` (or pass ``--py-spy PATH``).
"""

import argparse
import collections
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.envs import ensure_env

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SANDBOX_KEY = "sk_test_sandbox"
# The sandbox spreads bookings over [anchor - 60 d, anchor + 30 d]; the window holds them all.
PAST_DAYS = 62
FUTURE_DAYS = 32
OPEN_RATE_LIMIT = "10000"
OPEN_BURST = "1000"
PER_10K = 10_000
SAMPLES_PER_S = 200
ATTACH_TIMEOUT_S = 30.0
# What the process does before the extract's own code: kept apart from the parts below.
IMPORTS = "startup and imports"
IDLE = "waiting (event loop idle)"
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


def read_samples(raw: Path, *, main_only: bool) -> tuple[collections.Counter[str], int]:
    """Samples by part from py-spy's raw output (``--threads``: the first frame is the thread)."""
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if main_only and "MainThread" not in thread:
            continue
        part = part_of(frames, idle=main_only)
        if not frames and "MainThread" not in thread:
            part = NATIVE_THREADS
        parts[part] += int(count)
        total += int(count)
    return parts, total


def top_lines(raw: Path, count: int) -> list[tuple[int, str]]:
    """The innermost frames that were sampled most."""
    lines: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            lines[stack.rsplit(";", 1)[-1]] += int(samples)
    return [(n, frame) for frame, n in lines.most_common(count)]


# ---------------------------------------------------------------------------------------------
# One sampled extract


# The target waits for py-spy to attach before it imports anything, so imports are sampled.
_WAIT_THEN_RUN = """
import os, runpy, sys, time
go, mode, *argv = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.002)
sys.argv = argv
if mode == "module":
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
else:
    runpy.run_path(argv[0], run_name="__main__")
"""


def _target_argv(path: str, base_url: str, out: Path, window: Sequence[str]) -> list[str]:
    if path == "cli":
        argv = ["module", "jicoo_connector.cli", "extract", "--tables", "bookings"]
        return [*argv, "--out", str(out), "--start", window[0], "--end", window[1]]
    argv = ["script", str(BENCH / "ours.py"), "--base-url", base_url, "--out", str(out)]
    argv += ["--start", window[0], "--end", window[1]]
    return [*argv, "--rate-limit", OPEN_RATE_LIMIT, "--burst", OPEN_BURST]


def sampled_extract(
    py_spy: str, path: str, clock: str, base_url: str, work: Path, window: Sequence[str]
) -> tuple[float, float, Path]:
    """(CPU s, wall s, py-spy raw file) of one extract run under py-spy."""
    go, raw = work / "go", work / "samples.raw"
    env = {
        **os.environ,
        "JICOO_BASE_URL": base_url,
        "JICOO_API_KEY": SANDBOX_KEY,
        "JICOO_RATE_LIMIT": OPEN_RATE_LIMIT,
        "JICOO_BURST": OPEN_BURST,
    }
    argv = [sys.executable, "-c", _WAIT_THEN_RUN, str(go)]
    argv += _target_argv(path, base_url, work / "out", window)
    with (work / "stderr.log").open("wb") as stderr:
        target = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    spy_argv = [py_spy, "record", "--pid", str(target.pid), "--format", "raw", "--threads"]
    spy_argv += ["--rate", str(SAMPLES_PER_S), "--nonblocking", "--output", str(raw)]
    if clock == "wall":
        spy_argv.append("--idle")
    spy = subprocess.Popen(spy_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_attached(spy)
    started = time.perf_counter()
    go.touch()
    _, status, usage = os.wait4(target.pid, 0)
    wall = time.perf_counter() - started
    target.returncode = os.waitstatus_to_exitcode(status)
    spy.wait(ATTACH_TIMEOUT_S)
    if target.returncode:
        tail = (work / "stderr.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"the extract failed (exit {target.returncode}):\n{tail}")
    return usage.ru_utime + usage.ru_stime, wall, raw


def _wait_attached(spy: "subprocess.Popen[str]") -> None:
    # py-spy says "Sampling process ..." once it is attached.
    assert spy.stdout is not None
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while time.monotonic() < deadline:
        line = spy.stdout.readline()
        if "Sampling process" in line:
            return
        if not line and spy.poll() is not None:
            break
    raise SystemExit("py-spy did not attach (ptrace not permitted here?)")


def report(args: argparse.Namespace, py_spy: str, base_url: str, bookings: int) -> None:
    anchor = dt.date.fromisoformat(args.anchor)
    window = (
        (anchor - dt.timedelta(days=PAST_DAYS)).isoformat(),
        (anchor + dt.timedelta(days=FUTURE_DAYS)).isoformat(),
    )
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="profile-", dir=BENCH / "work") as temp:
        work = Path(temp)
        cpu, wall, raw = sampled_extract(py_spy, args.path, args.clock, base_url, work, window)
        parts, total = read_samples(raw, main_only=args.clock == "wall")
        lines = top_lines(raw, args.lines)
        if args.raw is not None:
            shutil.copyfile(raw, args.raw)
    seconds = cpu if args.clock == "cpu" else wall
    what = "CPU" if args.clock == "cpu" else "wall"
    print(
        f"\n{args.path} path, {bookings:,} bookings at 0 ms; {cpu:.2f} s CPU "
        f"({cpu * PER_10K / bookings:.3f} s per 10,000 bookings), {wall:.2f} s wall; "
        f"{total} samples ({'running threads' if args.clock == 'cpu' else 'main thread'}); "
        f"load average {load:.2f} at the start\n"
    )
    print(f"| where the {what} goes | {what} s | share | {what} s per 10,000 bookings |")
    print("|---|---:|---:|---:|")
    for name, samples in parts.most_common():
        share = samples / total if total else 0.0
        print(
            f"| {name} | {share * seconds:.2f} | {share:.0%} | "
            f"{share * seconds * PER_10K / bookings:.3f} |"
        )
    if lines:
        print(f"\nthe {len(lines)} most sampled lines:")
        for samples, frame in lines:
            print(f"  {samples / total:6.1%}  {frame}")


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
    parser.add_argument("--lines", type=int, default=0, help="also list the N most sampled lines")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's samples here")
    parser.add_argument("--py-spy", default=None, help="a py-spy binary (else installed)")
    args = parser.parse_args(argv)
    py_spy = args.py_spy or _installed_py_spy()
    (BENCH / "work").mkdir(exist_ok=True)
    if args.base_url is not None:
        report(args, py_spy, args.base_url.rstrip("/"), _total(args.base_url))
        return 0
    from jicoo_sandbox import SandboxProcess

    with SandboxProcess(
        bookings=args.bookings, anchor_date=args.anchor, start_timeout_s=900
    ) as sandbox:
        report(args, py_spy, sandbox.base_url.rstrip("/"), args.bookings)
    return 0


def _installed_py_spy() -> str:
    python = ensure_env("profile")
    found = shutil.which("py-spy", path=str(python.parent))
    if found is None:
        raise SystemExit(f"py-spy is not in {python.parent}")
    return found


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
