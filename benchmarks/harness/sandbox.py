"""The sandbox of a scenario, in its own process (so its CPU is not the tool's), and what a
benchmark reads from it: its CPU time and its request log."""

import contextlib
import datetime as dt
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx

from harness.base import PER_PAGE, SANDBOX_KEY, SANDBOX_SEED
from jicoo_sandbox import SandboxProcess

SANDBOX_START_TIMEOUT = 900.0
HTTP_TIMEOUT = 60.0
STATUS_TOO_MANY_REQUESTS = 429
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


class Sandbox:
    """jicoo_sandbox's SandboxProcess plus its CPU time and request log."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.base_url = ""
        self._process: SandboxProcess | None = None

    def __enter__(self) -> "Sandbox":
        self._process = SandboxProcess(
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

    def cpu_seconds(self) -> float | None:
        assert self._process is not None
        try:
            stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        except OSError:
            return None
        # After the ")" of comm, utime and stime are fields 12 and 13 (0-based) of the rest.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"X-Jicoo-Api-Key": SANDBOX_KEY}, timeout=HTTP_TIMEOUT
        )

    def clear_log(self) -> None:
        with self.client() as client:
            client.post("/_sandbox/requests/clear").raise_for_status()

    def log(self) -> list[Mapping[str, object]]:
        """The API requests served since the log was last cleared (``GET /_sandbox/requests``)."""
        with self.client() as client:
            answer = client.get("/_sandbox/requests")
            answer.raise_for_status()
            entries = answer.json()["data"]
        return [e for e in entries if not str(e.get("path", "")).startswith("/_sandbox")]

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


@dataclass
class RequestTally:
    """What the sandbox's log says a run asked for."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    # GETs of a listing's first page (page=1): each listing asks for one.
    listings: int = 0
    first_at: float | None = None
    last_at: float | None = None

    @property
    def too_many(self) -> int:
        return self.by_status.get(str(STATUS_TOO_MANY_REQUESTS), 0)

    @property
    def span_s(self) -> float | None:
        if self.first_at is None or self.last_at is None:
            return None
        return self.last_at - self.first_at

    def counts(self, rows: int | None) -> dict[str, int]:
        """Total, 429s and listings; with ``rows``, the pages those rows fill at PER_PAGE."""
        counts = {"total": self.total, "429": self.too_many, "listings": self.listings}
        if rows is not None:
            counts["pages_of_rows"] = math.ceil(rows / PER_PAGE)
        return counts


def tally(entries: list[Mapping[str, object]]) -> RequestTally:
    result = RequestTally()
    for entry in entries:
        result.total += 1
        status = str(entry.get("status", "?"))
        method = str(entry.get("method", "?")).upper()
        result.by_status[status] = result.by_status.get(status, 0) + 1
        result.by_method[method] = result.by_method.get(method, 0) + 1
        query = parse_qs(str(entry.get("query", "")))
        if method == "GET" and query.get("page") == ["1"]:
            result.listings += 1
        stamp = entry.get("at")
        if isinstance(stamp, int | float):
            result.first_at = stamp if result.first_at is None else min(result.first_at, stamp)
            result.last_at = stamp if result.last_at is None else max(result.last_at, stamp)
    return result


@contextlib.contextmanager
def observe(sandbox: Sandbox) -> Iterator[Callable[[], RequestTally]]:
    """Counts the requests the sandbox served inside the block (its log, cleared first)."""
    sandbox.clear_log()
    holder: list[RequestTally] = []
    yield lambda: holder[0] if holder else RequestTally()
    holder.append(tally(sandbox.log()))
