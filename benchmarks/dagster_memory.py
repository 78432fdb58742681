"""Peak RSS of a Dagster run of the daily job: the 120-day sweep against a 7-day refresh.

Both through Dagster's own CLI (`dagster job execute`, default multiprocess executor) against
an unthrottled sandbox of N bookings (500,000 for the issue's figure), every contact read
(`full`), fresh output each. Peak RSS is ``ru_maxrss`` of the reaped CLI process (os.wait4):
the largest resident set of any process of the run, orchestrator or step.

    .venv/bin/python benchmarks/dagster_memory.py --bookings 500000
"""

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jicoo_connector.dagster import JicooNames  # noqa: E402
from jicoo_sandbox.server import SandboxProcess  # noqa: E402

KEY = "sk_test_sandbox"
ZONE = ZoneInfo("Asia/Tokyo")
KIB = 1024
TARGET_RATIO = 1.3
# The code location's organization here (JICOO_ORGANIZATION), and so its names.
NAMES = JicooNames("bench")
FULL = json.dumps({"ops": {NAMES.op("booking_contacts"): {"config": {"full": True}}}})


def measure(base_url: str, start: dt.date, end: dt.date) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="jicoo-bench-memory-"))
    shutil.copyfile(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    (home / "full.yaml").write_text(FULL, encoding="utf-8")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "JICOO_ORGANIZATION": NAMES.organization,
        "JICOO_API_KEY": KEY,
        "JICOO_BASE_URL": base_url,
        "JICOO_RATE_LIMIT": "10000",
        "JICOO_BURST": "1000",
        "JICOO_WAREHOUSE_ROOT": str(home / "warehouse"),
        "JICOO_DUCKDB_PATH": str(home / "warehouse.duckdb"),
    }
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    argv = [str(Path(sys.executable).with_name("dagster")), "job", "execute"]
    argv += ["-m", "assets.definitions", "-a", "defs", "-j", NAMES.job("daily_tables")]
    argv += ["--tags", json.dumps(tags), "-c", str(home / "full.yaml")]
    started = time.perf_counter()
    with (home / "run.log").open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"run failed, see {home / 'run.log'}")
    shutil.rmtree(home, ignore_errors=True)
    return {
        "days": (end - start).days + 1,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / KIB, 1),
        "load_average": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bookings", type=int, default=500_000, help="sandbox size")
    args = parser.parse_args()
    today = dt.datetime.now(ZONE).date()
    with SandboxProcess(bookings=args.bookings, api_keys=(KEY,), start_timeout_s=900) as sandbox:
        week = measure(sandbox.base_url, today - dt.timedelta(days=6), today)
        print(f"7 days: {json.dumps(week)}", flush=True)
        sweep = measure(
            sandbox.base_url, today - dt.timedelta(days=90), today + dt.timedelta(days=29)
        )
        print(f"120 days: {json.dumps(sweep)}", flush=True)
    ratio = float(sweep["peak_rss_mib"]) / float(week["peak_rss_mib"])  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "bookings": args.bookings,
                "week": week,
                "sweep": sweep,
                "ratio": ratio,
                "met": ratio <= TARGET_RATIO,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
