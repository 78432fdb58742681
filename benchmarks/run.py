"""The benchmark driver: our extractor, loader and write-back against the alternatives, on the
sandbox. Each scenario (``benchmarks/scenarios/``) starts its own sandbox process and runs every
measured tool as its own child process (``benchmarks/harness/``); this file picks the
scenarios, runs them, judges each one's targets and writes the results file.

    .venv/bin/python benchmarks/run.py            # full size, 3 runs (make bench)
    .venv/bin/python benchmarks/run.py --quick    # 5,000 bookings, 1 run (make bench-quick)
    .venv/bin/python benchmarks/run.py --only extract_0ms,extract_50ms,extract_1m
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import httpx
from harness.base import RESULTS, ROOT, SANDBOX_KEY, SANDBOX_SEED, WORK
from harness.envs import EnvError, ensure_env, env_python
from harness.machine import library_defaults, machine_info, warm_up
from harness.measure import Context
from harness.report import Target, markdown, target_met
from harness.sandbox import SandboxUnavailableError
from harness.tools import DLT, OPEN_BURST, OPEN_RATE_LIMIT
from scenarios import Scenario, all_scenarios


def _dlt_unavailable(args: argparse.Namespace) -> str | None:
    """Why dlt cannot run (None: it can). --quick never installs anything."""
    if args.no_dlt:
        return "skipped (--no-dlt)"
    if args.quick:
        return None if env_python("dlt").exists() else "skipped in --quick: dlt env not set up"
    try:
        ensure_env("dlt")
    except EnvError as exc:
        return f"dlt env setup failed: {exc}"
    return None


def _parse(argv: Sequence[str] | None, names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="jicoo-connector benchmarks against the sandbox")
    parser.add_argument("--quick", action="store_true", help="5,000 bookings, 1 run, no 500k run")
    parser.add_argument("--runs", type=int, default=None, help="runs per tool (default 3; quick 1)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {', '.join(names)} (default all; --quick leaves out "
        "extract_1m and webhooks unless named here)",
    )
    parser.add_argument("--no-dlt", action="store_true", help="skip dlt runs")
    parser.add_argument(
        "--memory-bookings",
        type=int,
        default=None,
        help="size of the memory run (default 500,000; --quick skips it unless given)",
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    return parser.parse_args(argv)


def _chosen(args: argparse.Namespace, scenarios: list[Scenario]) -> list[Scenario]:
    if args.only is None:
        return [s for s in scenarios if s.in_quick or not args.quick]
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    known = {s.name for s in scenarios}
    if unknown := wanted - known:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {sorted(known)}")
    return [s for s in scenarios if s.name in wanted]


def _run_one(scenario: Scenario, ctx: Context) -> dict[str, object]:
    print(f"== {scenario.name} (load average {os.getloadavg()[0]:.2f})")
    started = time.perf_counter()
    try:
        result = scenario.run(ctx)
    except (SandboxUnavailableError, httpx.HTTPError, OSError) as exc:
        print(f"  FAILED: {exc}")
        result = {"error": str(exc)}
    result["load_average_at_start"] = os.getloadavg()[0]
    result["scenario_seconds"] = time.perf_counter() - started
    return result


def _settings(args: argparse.Namespace, ctx: Context, chosen: list[Scenario]) -> dict[str, object]:
    return {
        "quick": args.quick,
        "runs": args.runs,
        "scenarios": [s.name for s in chosen],
        "sandbox_key": SANDBOX_KEY,
        "seed": SANDBOX_SEED,
        "anchor_date": ctx.anchor.isoformat(),
        "open_client_rate_limit": OPEN_RATE_LIMIT,
        "open_client_burst": OPEN_BURST,
        "unavailable": ctx.unavailable,
        "ours_defaults": library_defaults(),
        "apply": "jicoo apply defaults (--concurrency 4), cancels only, fresh sandbox per run",
        "dlt": "rest_api defaults: nested hosts -> child table, write_disposition replace",
        "wall_time": "child process start to reap (interpreter start and imports included)",
        "cpu": "user + sys of the reaped child (os.wait4), its threads included",
        "peak_rss": "ru_maxrss of the reaped child (os.wait4), MiB",
    }


def main(argv: Sequence[str] | None = None) -> int:
    scenarios = all_scenarios()
    args = _parse(argv, [s.name for s in scenarios])
    chosen = _chosen(args, scenarios)
    mode = "quick" if args.quick else "full"
    ctx = Context(
        quick=args.quick,
        anchor=dt.datetime.now(dt.UTC).date(),
        work=WORK / mode,
        runs_override=args.runs,
        options={"memory_bookings": args.memory_bookings},
    )
    if (why := _dlt_unavailable(args)) is not None:
        ctx.unavailable[DLT] = why
        print(f"note: {DLT}: {why}")
    warm_up(with_dlt=DLT not in ctx.unavailable)
    shutil.rmtree(ctx.work, ignore_errors=True)
    machine = machine_info()
    started = dt.datetime.now(dt.UTC)
    found: list[Target] = []
    for scenario in chosen:
        ctx.results[scenario.name] = _run_one(scenario, ctx)
        found += scenario.targets(ctx.results[scenario.name])
    report = {
        "date": started.isoformat(),
        "mode": mode,
        "machine": machine,
        "load_average_at_end": os.getloadavg(),
        "settings": _settings(args, ctx, chosen),
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
