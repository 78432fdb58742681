"""Bookings per second through AsyncJicooClient.list_bookings against a sandbox in its own process.

Each latency runs its own sandbox (``SandboxProcess``) with the fault profile's ``latency_ms``;
the client's rate limit is set far above what the sandbox can serve so it never throttles.

    .venv/bin/python benchmarks/bench_client.py --bookings 50000 --latency-ms 0 50
"""

import argparse
import asyncio
import statistics
import sys
import time

from jicoo_connector.client import AsyncJicooClient, RateLimiter
from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY
from jicoo_sandbox.server import SandboxProcess

UNTHROTTLED_RPS = 100_000.0
UNTHROTTLED_BURST = 100_000


async def one_run(settings: Settings) -> tuple[float, int, int]:
    limiter = RateLimiter(settings.rate_limit, settings.burst)
    async with AsyncJicooClient(settings, limiter=limiter) as client:
        started = time.perf_counter()
        listing = await client.list_bookings()
        elapsed = time.perf_counter() - started
    if len({record["uid"] for record in listing.records}) != listing.total_count:
        raise SystemExit("the listing is not complete and unique: benchmark invalid")
    return elapsed, len(listing.records), listing.report.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--concurrency", type=int, default=16, help="settings.page_concurrency")
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(
        f"bench_client: {args.bookings} bookings, per_page={args.per_page}, "
        f"page_concurrency={args.concurrency}, client rate_limit={UNTHROTTLED_RPS:.0f}/s "
        f"burst={UNTHROTTLED_BURST}, sandbox unthrottled, {args.repeat} runs each, python "
        f"{sys.version.split()[0]}"
    )
    for latency in args.latency_ms:
        with SandboxProcess(bookings=args.bookings, latency_ms=latency) as sandbox:
            settings = Settings(
                api_key=ApiKey(DEFAULT_SANDBOX_KEY),
                base_url=sandbox.base_url,
                per_page=args.per_page,
                page_concurrency=args.concurrency,
                rate_limit=UNTHROTTLED_RPS,
                burst=UNTHROTTLED_BURST,
            )
            runs = [asyncio.run(one_run(settings)) for _ in range(args.repeat)]
        rates = [rows / seconds for seconds, rows, _ in runs]
        _, rows, requests = runs[0]
        print(
            f"latency {latency:5.0f} ms: median {statistics.median(rates):8.0f} bookings/s "
            f"(best {max(rates):.0f}, worst {min(rates):.0f}); {rows} rows, {requests} requests, "
            f"median {statistics.median(s for s, _, _ in runs):.2f} s per listing"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
