"""Webhook freshness: a sandbox change to the changed row readable in Parquet, daemon running.

The whole path runs as it would in production, each piece in its own process: the sandbox
(sending signed webhooks), ``jicoo webhook serve`` (recording them), and ``dagster-daemon run``
on the project's code location (booking_events_sensor at its default interval, the instance
of scripts/dagster.yaml as ``make dev`` uses it: the `jicoo_api` pool of one slot, the queued
run coordinator and the default run launcher). The driver reschedules one booking per second
through the sandbox API into another day and polls that day's Parquet file until the booking
shows its new start. The daemon's cost is its process tree's CPU (the daemon, its code server,
the run workers): while idle, and from the first change until the last run ended. The e2e test
(tests/webhooks/test_end_to_end.py) uses the same stack.

    .venv/bin/python benchmarks/webhook_freshness.py [--changes 60] [--interval S] [--save]
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import httpx
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.process_cpu import CpuWindow  # noqa: E402
from benchmarks.webhook_timeline import run_timelines, summarize  # noqa: E402
from jicoo_connector.config import ConnectorConfig  # noqa: E402
from jicoo_connector.extract import TABLES  # noqa: E402
from jicoo_connector.storage import ParquetStore  # noqa: E402
from jicoo_sandbox.server import SandboxProcess  # noqa: E402

ZONE = "Asia/Tokyo"
TOKYO = ZoneInfo(ZONE)
CONNECTOR_KEY = "sk_test_connector"
DRIVER_KEY = "sk_test_driver"
WEBHOOK_SECRET = "whsec_bench_only"  # a local test secret, not a credential
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
POLL_S = 0.25
RECEIVER_READY = "Jicoo webhook receiver listening on "
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
QUIET_MARGIN_S = 5.0
# Moves go from a booking's day to a free slot 1..6 days later (inside the partitions).
MOVE_FIRST_DAY = 2
MOVE_LAST_DAY = 12
DEFAULT_CHANGES = 60
# The instance `make dev` and the demo use (pool, run queue).
INSTANCE_CONFIG = ROOT / "scripts" / "dagster.yaml"
IDLE_S = 120.0
# Issue 28: a webhook'd change readable in Parquet within 15 s (p95, daemon running; was a
# minute, issue 18). The `webhooks` scenario of run.py judges it too.
TARGET_P95_S = 15.0
RESULTS = ROOT / "benchmarks" / "results"
SETTLE_S = 30.0


def tokyo_day(instant: str) -> dt.date:
    return dt.datetime.fromisoformat(instant).astimezone(TOKYO).date()


@dataclass(frozen=True)
class Move:
    uid: str
    old_day: dt.date
    new_start: str
    new_day: dt.date


def _instant(day: dt.date) -> str:
    start = dt.datetime.combine(day, dt.time(), tzinfo=TOKYO).astimezone(dt.timezone.utc)
    return start.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def find_moves(client: httpx.Client, count: int, first_day: dt.date, days: int) -> list[Move]:
    """Open bookings, each with a free slot on a later day; no two targets of a host overlap."""
    moves: list[Move] = []
    claimed: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        listing = client.get(
            "/v1/bookings",
            params={"status": "open", "startedAt": _instant(day),
                    "endedAt": _instant(day + dt.timedelta(days=1)), "perPage": 100},
        )  # fmt: skip
        listing.raise_for_status()
        for booking in listing.json()["data"]:
            if not booking["eventTypeId"]:
                continue
            span = dt.datetime.fromisoformat(booking["endedAt"]) - dt.datetime.fromisoformat(
                booking["startedAt"]
            )
            hosts = [h["userId"] for h in booking["hosts"]]
            window_start = day + dt.timedelta(days=1)
            slots = client.get(
                f"/v1/event_types/{booking['eventTypeId']}/available_schedules",
                params={"periodStart": _instant(window_start),
                        "periodEnd": _instant(window_start + dt.timedelta(days=6))},
            )  # fmt: skip
            slots.raise_for_status()
            for slot in slots.json()["data"]:
                start = dt.datetime.fromisoformat(slot["startedAt"])
                taken = [c for h in hosts for c in claimed.get(h, [])]
                if any(s < start + span and start < e for s, e in taken):
                    continue
                for host in hosts:
                    claimed.setdefault(host, []).append((start, start + span))
                moves.append(
                    Move(booking["uid"], day, slot["startedAt"], tokyo_day(slot["startedAt"]))
                )
                break
            if len(moves) == count:
                return moves
    return moves


def reschedule(client: httpx.Client, move: Move) -> None:
    response = client.post(
        f"/v1/bookings/{move.uid}/reschedule",
        json={"startedAt": move.new_start, "timeZone": ZONE},
    )
    response.raise_for_status()


def row_started_at(root: Path, day: dt.date, uid: str) -> str | None:
    """The booking's started_at in that day's Parquet file (ISO, UTC), or None if absent."""
    path = Path(ParquetStore(root).partition_path(TABLES["bookings"].spec, day))
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["uid", "started_at"], filters=[("uid", "==", uid)])
    if not len(table):
        return None
    value = table["started_at"][0].as_py()
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Child:
    """A child process whose first stdout line announces it; stdout/stderr go to a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("w", encoding="utf-8")
        # Its own session: stop() ends the child's whole group (the daemon's code server and
        # run workers are its children), and nothing else.
        self.process = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self._drain: threading.Thread | None = None

    def first_line(self, timeout_s: float) -> str:
        lines: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not lines or not lines[0]:
            raise RuntimeError(f"{self.process.args} did not announce itself (see {self.log.name})")
        # Keep draining stdout so the child never blocks on a full pipe.
        self._drain = threading.Thread(target=stdout.read, daemon=True)
        self._drain.start()
        return lines[0]

    def _close(self) -> None:
        if self._drain is not None:
            self._drain.join(HTTP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(HTTP_TIMEOUT_S)
        self._close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(HTTP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(HTTP_TIMEOUT_S)
        self._close()


def receiver_process(
    db: Path | str, env: dict[str, str], log: Path, port: int = 0
) -> tuple[_Child, str]:
    """``jicoo webhook serve`` as a child (``db``: a file or a postgresql:// URL); returns it and
    its URL."""
    args = [sys.executable, "-m", "jicoo_connector.cli", "webhook", "serve",
            "--port", str(port), "--db", str(db)]  # fmt: skip
    child = _Child(args, {**env, "JICOO_WEBHOOK_SECRET": WEBHOOK_SECRET}, log)
    line = child.first_line(START_TIMEOUT_S)
    if not line.startswith(RECEIVER_READY):
        child.stop()
        raise RuntimeError(f"the receiver did not start: {line!r}")
    return child, line.removeprefix(RECEIVER_READY).split()[0]


class WebhookStack:
    """Sandbox -> receiver -> daemon, all children, in a temp directory (kept for post-mortems
    when ``keep`` is set)."""

    def __init__(
        self, work: Path, *, interval_s: int, bookings: int = 2000, instance: Path = INSTANCE_CONFIG
    ) -> None:
        self.work = work
        self.warehouse = work / "warehouse"
        self.events_db = work / "events.sqlite"
        self.home = work / "dagster_home"
        self.interval_s = interval_s
        self.bookings = bookings
        self.instance = instance
        self._children: list[_Child] = []
        self._sandbox: SandboxProcess | None = None
        self.base_url = ""
        self.daemon_pid = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DAGSTER_HOME": str(self.home),
            "JICOO_API_KEY": CONNECTOR_KEY,
            "JICOO_BASE_URL": self.base_url,
            "JICOO_WAREHOUSE_ROOT": str(self.warehouse),
            "JICOO_DUCKDB_PATH": str(self.work / "warehouse.duckdb"),
            "JICOO_WEBHOOK_DB": str(self.events_db),
            "JICOO_WEBHOOK_INTERVAL_S": str(self.interval_s),
            "JICOO_TIMEZONE": ZONE,
        }

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_bytes(self.instance.read_bytes())
        receiver, url = receiver_process(self.events_db, self.env(), self.work / "receiver.log")
        self._children.append(receiver)
        self._sandbox = SandboxProcess(
            bookings=self.bookings, api_keys=(CONNECTOR_KEY, DRIVER_KEY),
            webhook_url=url, webhook_secret=WEBHOOK_SECRET,
        )  # fmt: skip
        self._sandbox.start()
        self.base_url = self._sandbox.base_url

    def start_daemon(self) -> None:
        daemon = shutil_which("dagster-daemon")
        child = _Child(
            [daemon, "run", "-w", "workspace.yaml"], self.env(), self.work / "daemon.log"
        )
        self._children.append(child)
        self.daemon_pid = child.process.pid

    def driver(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"X-Jicoo-Api-Key": DRIVER_KEY}, timeout=HTTP_TIMEOUT_S
        )

    def seed_warehouse(self, days: Sequence[dt.date]) -> None:
        """What the daily refresh would have left: the days' bookings and contacts in Parquet
        (with the driver's key, so the connector's request count is the webhooks' alone)."""
        from jicoo_connector.extract import extract_range
        from jicoo_connector.settings import ApiKey, Settings

        settings = Settings(api_key=ApiKey(DRIVER_KEY), base_url=self.base_url, rate_limit=100)
        for day in days:
            extract_range(settings, ["bookings", "booking_contacts"], day, day,
                          str(self.warehouse), zone=ZONE)  # fmt: skip

    def runs(self) -> dict[str, int]:
        """Runs the daemon launched, by status name (read from the instance's storage)."""
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home))) as instance:
            counts: dict[str, int] = {}
            for run in instance.get_runs():
                counts[run.status.value] = counts.get(run.status.value, 0) + 1
            return counts

    def wait_runs_done(self, timeout_s: float) -> dict[str, int]:
        """Wait until no run is queued or in progress for one full sensor interval."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            counts = self.runs()
            busy = sum(n for status, n in counts.items() if status not in FINISHED)
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since > self.interval_s + QUIET_MARGIN_S:
                return counts
            time.sleep(1.0)
        raise RuntimeError(f"runs still in progress after {timeout_s} s: {self.runs()}")

    def connector_requests(self) -> int:
        """API requests the connector's key made (the sandbox's request log)."""
        from jicoo_sandbox.faults import key_hash

        wanted = key_hash(CONNECTOR_KEY.encode())
        log = httpx.get(f"{self.base_url}/_sandbox/requests", timeout=HTTP_TIMEOUT_S).json()["data"]
        return sum(1 for entry in log if entry["key_hash"] == wanted)

    def journal(self) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = httpx.get(
            f"{self.base_url}/_sandbox/journal", timeout=HTTP_TIMEOUT_S
        ).json()["data"]
        return entries

    def stop(self) -> None:
        for child in reversed(self._children):
            child.stop()
        self._children.clear()
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


def shutil_which(tool: str) -> str:
    path = Path(sys.executable).with_name(tool)
    if not path.exists():
        raise RuntimeError(f"{tool} is not installed next to {sys.executable}")
    return str(path)


def wait_for(
    moves: dict[int, tuple[Move, float]], expected: int, root: Path, timeout_s: float
) -> dict[int, float]:
    """Poll until each of ``expected`` moves shows its new start; seconds from its change, per
    move. ``moves`` may still be growing (the changes are made while this polls).

    Each day's file is read again only when it was replaced (atomic rename: a new inode), so a
    poll costs a stat per day, not a read per change.
    """
    seen: dict[int, float] = {}
    known: dict[dt.date, tuple[int, int]] = {}
    starts: dict[dt.date, dict[str, str]] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        pending = dict(moves)
        for day in {move.new_day for move, _ in pending.values()}:
            path = Path(ParquetStore(root).partition_path(TABLES["bookings"].spec, day))
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                if known.get(day) != (stat.st_ino, stat.st_mtime_ns):
                    known[day] = (stat.st_ino, stat.st_mtime_ns)
                    table = pq.read_table(path, columns=["uid", "started_at"])
                    starts[day] = {
                        uid: value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                        for uid, value in zip(
                            table["uid"].to_pylist(), table["started_at"].to_pylist(), strict=True
                        )
                    }
        now = time.monotonic()
        for index, (move, changed_at) in pending.items():
            if index not in seen and starts.get(move.new_day, {}).get(move.uid) == move.new_start:
                seen[index] = now - changed_at
        time.sleep(POLL_S)
    return seen


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="jicoo-webhook-bench-") as tmp:
        yield Path(tmp)


def _prepare(stack: WebhookStack, changes: int) -> tuple[list[Move], list[dt.date]]:
    """The moves to make, and their days seeded in the warehouse."""
    today = dt.datetime.now(TOKYO).date()
    with stack.driver() as client:
        moves = find_moves(client, changes, today + dt.timedelta(days=MOVE_FIRST_DAY),
                           MOVE_LAST_DAY - MOVE_FIRST_DAY)  # fmt: skip
    if len(moves) < changes:
        raise RuntimeError(f"only {len(moves)} movable bookings found for {changes} changes")
    days = sorted({m.old_day for m in moves} | {m.new_day for m in moves})
    stack.seed_warehouse(days)
    return moves, days


def _make_changes(
    stack: WebhookStack, moves: Sequence[Move], interval_s: int
) -> tuple[dict[int, float], dict[str, float]]:
    """One change a second; seconds until each shows in Parquet; the load average meanwhile."""
    load_before = os.getloadavg()
    started: dict[int, tuple[Move, float]] = {}
    seen: dict[int, float] = {}
    # Detection runs while the changes are made: the first change's clock starts at once.
    poller = threading.Thread(
        target=lambda: seen.update(
            wait_for(started, len(moves), stack.warehouse, len(moves) + interval_s * 4 + 120)
        ),
        daemon=True,
    )
    poller.start()
    begin = time.monotonic()
    with stack.driver() as client:
        for index, move in enumerate(moves):
            time.sleep(max(0.0, begin + index - time.monotonic()))
            reschedule(client, move)
            started[index] = (move, time.monotonic())
    load_during = os.getloadavg()
    poller.join()
    load_after = os.getloadavg()
    return seen, {"before": load_before[0], "during": load_during[0], "after": load_after[0]}


def _freshness(seconds: list[float]) -> dict[str, float | None]:
    """The median, 95th percentile and maximum of sorted ``seconds`` (None without any)."""
    if not seconds:
        return {"freshness_p50_s": None, "freshness_p95_s": None, "freshness_max_s": None}
    return {
        "freshness_p50_s": round(statistics.median(seconds), 1),
        "freshness_p95_s": round(seconds[int(0.95 * (len(seconds) - 1))], 1),
        "freshness_max_s": round(seconds[-1], 1),
    }


def run(
    changes: int,
    interval_s: int | None = None,
    keep: Path | None = None,
    idle_s: float = IDLE_S,
    instance: Path = INSTANCE_CONFIG,
) -> dict[str, object]:
    """The freshness scenario; returns its figures (also printed)."""
    interval_s = interval_s or ConnectorConfig().webhook_interval_s
    uptime_start = _uptime()
    with (
        _workdir(keep) as work,
        WebhookStack(work, interval_s=interval_s, instance=instance) as stack,
    ):
        moves, days = _prepare(stack, changes)
        stack.start_daemon()
        # The daemon and its code server take a while to start; let them, and a first tick.
        time.sleep(interval_s + SETTLE_S)
        idle = CpuWindow(stack.daemon_pid)
        idle.start(time.monotonic())
        time.sleep(idle_s)
        cpu_idle = idle.stop(time.monotonic())
        busy = CpuWindow(stack.daemon_pid)
        busy.start(time.monotonic())
        seen, load = _make_changes(stack, moves, interval_s)
        runs = stack.wait_runs_done(timeout_s=interval_s * 4 + 300)
        cpu_busy = busy.stop(time.monotonic())
        connector_requests = stack.connector_requests()
        polling = polling_refresh_requests(stack, days)
        timelines = run_timelines(stack.home, stack.events_db)
    return {
        "changes": changes,
        "visible": len(seen),
        "sensor_interval_s": interval_s,
        "instance": _instance_settings(instance),
        **_freshness(sorted(seen.values())),
        "dagster_runs": runs,
        # Where each refresh's time went (benchmarks/webhook_timeline.py), and over the runs.
        "stages": summarize(timelines),
        "run_timelines": timelines,
        "webhook_requests": connector_requests,
        "webhook_requests_per_change": round(connector_requests / changes, 1),
        "days_touched": len(days),
        "polling_requests_per_refresh": polling,
        "polling_requests_per_hour": polling * 12,
        # The daemon's process tree (daemon, code server, run workers), in CPU seconds.
        "daemon_cpu_idle": cpu_idle,
        "daemon_cpu_under_events": {
            **cpu_busy,
            "cpu_s_per_change": round(cpu_busy["cpu_s"] / changes, 2),
        },
        "load_average_1m": load,
        # Other work shares the machine's cores: its load is part of the figure.
        "uptime": {"start": uptime_start, "end": _uptime()},
    }


def _instance_settings(path: Path) -> dict[str, str]:
    """Where the daemon's dagster.yaml came from, and its settings (comments left out)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    return {"file": str(shown), "settings": "\n".join(kept)}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def polling_refresh_requests(stack: WebhookStack, days: Sequence[dt.date]) -> int:
    """Requests one polling refresh of ``days`` costs (bookings + contacts, as the job does)."""
    from jicoo_connector.extract import extract_range
    from jicoo_connector.settings import ApiKey, Settings

    settings = Settings(api_key=ApiKey(DRIVER_KEY), base_url=stack.base_url, rate_limit=100)
    total = 0
    scratch = stack.work / "polling"
    for day in days:
        results = extract_range(settings, ["bookings", "booking_contacts"], day, day,
                                str(scratch), zone=ZONE)  # fmt: skip
        total += sum(r.report.requests for r in results)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--changes", type=int, default=DEFAULT_CHANGES, help="changes made, 1 per second"
    )
    parser.add_argument(
        "--interval", type=int, default=None, help="sensor interval, s (default: the setting's)"
    )
    parser.add_argument("--idle", type=float, default=IDLE_S, help="idle CPU window, s")
    parser.add_argument(
        "--instance", type=Path, default=INSTANCE_CONFIG, help="the daemon's dagster.yaml"
    )
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--save", action="store_true",
        help="also write benchmarks/results/<UTC date>-webhooks-load-<N>.json (N: the load)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    result = run(args.changes, args.interval, args.keep, args.idle, args.instance)
    text = json.dumps(result, indent=2)
    print(text)
    out: Path | None = args.out
    if args.save:
        out = RESULTS / f"{dt.datetime.now(dt.timezone.utc):%F}-webhooks-load-{_load(result)}.json"
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    print(summary(result, out))
    return 0


def _load(result: Mapping[str, Any]) -> int:
    """The 1-minute load average while the changes were made, rounded."""
    return round(float(result["load_average_1m"]["during"]))


def summary(result: Mapping[str, Any], out: Path | None) -> str:
    idle, busy = result["daemon_cpu_idle"], result["daemon_cpu_under_events"]
    return (
        f"freshness p50 {result['freshness_p50_s']} s, p95 {result['freshness_p95_s']} s, "
        f"max {result['freshness_max_s']} s ({result['visible']}/{result['changes']} visible; "
        f"target p95 <= {TARGET_P95_S} s); {result['webhook_requests_per_change']} requests per "
        f"change; runs {result['dagster_runs']}; daemon CPU {idle['cpu_s_per_hour']} s/h idle, "
        f"{busy['cpu_s_per_hour']} s/h under events ({busy['cpu_s_per_change']} s per change); "
        f"load {result['load_average_1m']['during']:.1f} during the changes"
        + (f"; written to {out}" if out is not None else "")
    )


if __name__ == "__main__":
    sys.exit(main())
