"""The daily refresh through Dagster, as users run it: real instance, default executor, 10 req/s.

A sandbox of N bookings (50,000 in `make bench`) is served in its own process. Dagster's own CLI
(`dagster job execute`) runs the jobs against an instance configured like `make dagster-home`
(scripts/dagster.yaml: one slot for the organization's pool, `jicoo_api_bench`):

1. seed: the refresh window (7 days back, 14 ahead, in Asia/Tokyo) extracted once, unthrottled,
   so the contacts partitions and their booking versions exist (a deployment's yesterday);
2. 2% of the sandbox's bookings are cancelled (status and updatedAt change), at random (seeded);
   the sandbox is limited to 10 req/s (burst 20), the code location gets JICOO_RATE_LIMIT=10;
3. "alone": the daily refresh, alone. Requests by endpoint, wall time (process start to exit),
   share answered 429, against: requests <= (listing pages + changed bookings in the window)
   x 1.05 and wall <= 1.2 x requests / rate;
4. another 2% cancelled; "with snapshots": the daily refresh and the snapshots job launched at
   once. Share answered 429 over both runs' requests, against < 2%.

    .venv/bin/python benchmarks/dagster_refresh.py                  # 50,000 bookings
    .venv/bin/python benchmarks/dagster_refresh.py --bookings 5000  # a quick reading

Prints figures as it goes and one JSON line last (what benchmarks/run.py reads).
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jicoo_connector.dagster import JicooNames  # noqa: E402
from jicoo_sandbox.server import SandboxProcess  # noqa: E402

KEY = "sk_test_sandbox"
# The code location's organization here (JICOO_ORGANIZATION), and so its job names.
NAMES = JicooNames("bench")
DAILY_JOB = NAMES.job("daily_tables")
SNAPSHOTS_JOB = NAMES.job("snapshots")
SEED = 7
RATE = 10
BURST = 20
CHANGED_SHARE = 0.02
PAST_DAYS, FUTURE_DAYS = 7, 14  # the refresh schedule's window (the refresh_* settings' defaults)
ZONE = ZoneInfo("Asia/Tokyo")
OPEN_RATE, OPEN_BURST = 5_000, 1_000
SANDBOX_START_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 3_600
TARGET_REQUEST_MARGIN = 1.05
TARGET_WALL_RATIO = 1.2
TARGET_429_SHARE = 0.02
_CONTACTS = re.compile(r"^/v1/bookings/[^/]+/contacts$")


def endpoint(path: str) -> str:
    """The request's endpoint with ids folded: what the figures are grouped by."""
    if _CONTACTS.match(path):
        return "/v1/bookings/{uid}/contacts"
    return re.sub(r"/v1/event_types/[^/]+/", "/v1/event_types/{uid}/", path)


class Bench:
    def __init__(self, sandbox: SandboxProcess, home: Path, today: dt.date) -> None:
        self.sandbox = sandbox
        self.home = home
        self.today = today
        self.http = httpx.Client(
            base_url=sandbox.base_url, headers={"X-Jicoo-Api-Key": KEY}, timeout=60
        )

    def env(self, rate: float, burst: int) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "JICOO_ORGANIZATION": NAMES.organization,
            "JICOO_API_KEY": KEY,
            "JICOO_BASE_URL": self.sandbox.base_url,
            "JICOO_RATE_LIMIT": str(rate),
            "JICOO_BURST": str(burst),
            "JICOO_WAREHOUSE_ROOT": str(self.home / "warehouse"),
            "JICOO_DUCKDB_PATH": str(self.home / "warehouse.duckdb"),
        }

    def window(self) -> tuple[dt.date, dt.date]:
        return self.today - dt.timedelta(days=PAST_DAYS), self.today + dt.timedelta(
            days=FUTURE_DAYS
        )

    def launch(self, job: str, env: Mapping[str, str], name: str) -> subprocess.Popen[bytes]:
        argv = [str(Path(sys.executable).with_name("dagster")), "job", "execute"]
        argv += ["-m", "assets.definitions", "-a", "defs", "-j", job]
        if job == DAILY_JOB:
            start, end = self.window()
            tags = {
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            }
            argv += ["--tags", json.dumps(tags)]
        with (self.home / f"{name}.log").open("wb") as log:
            return subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=log, stderr=log)

    def wait(self, process: subprocess.Popen[bytes], name: str) -> None:
        if process.wait(RUN_TIMEOUT_S) != 0:
            tail = (self.home / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} failed:\n{tail}")

    def set_limit(self, rate: float | None) -> None:
        profile = {} if rate is None else {"rate_limit": {"rps": rate, "burst": BURST}}
        self.http.post("/_sandbox/faults", json=profile).raise_for_status()

    def requests(self) -> list[dict[str, object]]:
        data: list[dict[str, object]] = self.http.get("/_sandbox/requests").json()["data"]
        return [e for e in data if str(e["path"]).startswith("/v1/")]

    def clear(self) -> None:
        self.http.post("/_sandbox/requests/clear").raise_for_status()

    def open_bookings(self) -> list[tuple[str, dt.datetime]]:
        found: list[tuple[str, dt.datetime]] = []
        page = 1
        while True:
            body = self.http.get(
                "/v1/bookings", params={"status": "open", "perPage": 100, "page": page}
            ).json()
            found += [
                (b["uid"], dt.datetime.fromisoformat(b["startedAt"].replace("Z", "+00:00")))
                for b in body["data"]
            ]
            if not body.get("nextPage"):
                return found
            page += 1

    def change(self, share: float, rng: random.Random, total: int) -> int:
        """Cancel ``share`` of all bookings (open ones, at random); how many of them start in
        the refresh window: the bookings whose contacts the refresh must read again."""
        chosen = rng.sample(self.open_bookings(), round(total * share))
        start, end = self.window()
        lower = dt.datetime.combine(start, dt.time(), ZONE)
        upper = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), ZONE)
        for uid, _ in chosen:
            self.http.post(f"/v1/bookings/{uid}/cancel", json={}).raise_for_status()
        return sum(1 for _, started in chosen if lower <= started < upper)


def figures(log: Sequence[Mapping[str, object]]) -> dict[str, object]:
    by_endpoint = Counter(f"{e['method']} {endpoint(str(e['path']))}" for e in log)
    answered_429 = sum(1 for e in log if e["status"] == 429)
    return {
        "requests": len(log),
        "by_endpoint": dict(sorted(by_endpoint.items())),
        "answered_429": answered_429,
        "share_429": answered_429 / len(log) if log else None,
    }


def measure_phase(
    bench: Bench, phase: str, with_snapshots: bool, rng: random.Random, bookings: int
) -> dict[str, object]:
    """One throttled daily refresh after a share of bookings changed (the snapshots job beside
    it if ``with_snapshots``): its requests, wall time and load."""
    changed = bench.change(CHANGED_SHARE, rng, bookings)
    bench.set_limit(RATE)
    bench.clear()
    load = os.getloadavg()
    started = time.perf_counter()
    env = bench.env(RATE, BURST)
    daily = bench.launch(DAILY_JOB, env, f"daily-{phase}")
    snapshots = bench.launch(SNAPSHOTS_JOB, env, f"snapshots-{phase}") if with_snapshots else None
    bench.wait(daily, f"daily-{phase}")
    wall = time.perf_counter() - started
    if snapshots is not None:
        bench.wait(snapshots, f"snapshots-{phase}")
    log = bench.requests()
    bench.set_limit(None)
    measured = figures(log)
    by_endpoint = measured["by_endpoint"]
    assert isinstance(by_endpoint, dict)
    pages = by_endpoint.get("GET /v1/bookings", 0)
    contacts = by_endpoint.get("GET /v1/bookings/{uid}/contacts", 0)
    daily_requests = pages + contacts
    measured.update(
        {
            "changed_in_window": changed,
            "listing_pages": pages,
            "contacts_calls": contacts,
            "daily_wall_s": round(wall, 1),
            "floor_s": daily_requests / RATE,
            "wall_ratio": wall / (daily_requests / RATE),
            "request_ratio": daily_requests / (pages + changed),
            "load_average_1_5_15": [round(x, 2) for x in load],
            "uptime_after": subprocess.run(
                ["uptime"], capture_output=True, text=True, check=False
            ).stdout.strip(),
        }
    )
    return measured


def run(bookings: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="jicoo-bench-dagster-"))
    shutil.copyfile(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    today = dt.datetime.now(ZONE).date()
    rng = random.Random(SEED)
    result: dict[str, object] = {"bookings": bookings, "rate": RATE, "burst": BURST}
    with SandboxProcess(
        seed=SEED,
        bookings=bookings,
        api_keys=(KEY,),
        start_timeout_s=SANDBOX_START_TIMEOUT_S,
    ) as sandbox:
        bench = Bench(sandbox, home, today)
        started = time.perf_counter()
        seed = bench.launch(DAILY_JOB, bench.env(OPEN_RATE, OPEN_BURST), "seed")
        bench.wait(seed, "seed")
        print(f"seed run (unthrottled): {time.perf_counter() - started:.1f} s", flush=True)

        for phase, with_snapshots in (("alone", False), ("with_snapshots", True)):
            measured = measure_phase(bench, phase, with_snapshots, rng, bookings)
            result[phase] = measured
            print(f"{phase}: {json.dumps(measured)}", flush=True)
    # Kept when a run fails: its logs are there.
    shutil.rmtree(home, ignore_errors=True)
    alone, both = result["alone"], result["with_snapshots"]
    assert isinstance(alone, dict)
    assert isinstance(both, dict)
    result["targets"] = {
        "requests <= (pages + changed) x 1.05": alone["request_ratio"] <= TARGET_REQUEST_MARGIN,
        "wall <= 1.2 x requests / rate": alone["wall_ratio"] <= TARGET_WALL_RATIO,
        "429 share < 2% with snapshots at once": (both["share_429"] or 0) < TARGET_429_SHARE,
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bookings", type=int, default=50_000, help="sandbox size")
    args = parser.parse_args()
    result = run(args.bookings)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
