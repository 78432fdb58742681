"""Throughput of the sandbox as a child process: pages/s of perPage=100 over ~8 connections.

Run: .venv/bin/python benchmarks/bench_sandbox.py [--bookings N] [--seconds S] [--connections C]
"""

import argparse
import asyncio
import statistics
import time

import httpx

from jicoo_connector.sandbox.server import SandboxProcess

PER_PAGE = 100
DEFAULT_BOOKINGS = 100_000
DEFAULT_SECONDS = 5.0
DEFAULT_CONNECTIONS = 8
WARMUP_PAGES = 20
MS_PER_S = 1000


async def worker(
    client: httpx.AsyncClient, pages: int, deadline: float, latencies: list[float], worker_id: int
) -> int:
    done = 0
    page = 1 + worker_id
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = await client.get("/v1/bookings", params={"perPage": PER_PAGE, "page": page})
        response.raise_for_status()
        body = response.json()
        latencies.append(time.monotonic() - started)
        if len(body["data"]) == 0 and page <= pages:
            raise RuntimeError(f"page {page} of {pages} came back empty")
        done += 1
        page = page % pages + 1
    return done


async def run(base_url: str, key: str, seconds: float, connections: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-Jicoo-Api-Key": key}, limits=limits, timeout=30
    ) as client:
        first = (await client.get("/v1/bookings", params={"perPage": PER_PAGE})).json()
        pages = int(first["numberOfPages"])
        for page in range(1, WARMUP_PAGES + 1):
            await client.get("/v1/bookings", params={"perPage": PER_PAGE, "page": page})
        latencies: list[float] = []
        started = time.monotonic()
        deadline = started + seconds
        counts = await asyncio.gather(
            *(worker(client, pages, deadline, latencies, i) for i in range(connections))
        )
        elapsed = time.monotonic() - started
    total = sum(counts)
    latencies.sort()
    p50 = statistics.median(latencies) * MS_PER_S
    p99 = latencies[int(len(latencies) * 0.99) - 1] * MS_PER_S
    print(f"total bookings {first['totalCount']}, pages of {PER_PAGE}: {pages}")
    print(f"pages fetched  {total} in {elapsed:.2f} s over {connections} connections")
    print(f"throughput     {total / elapsed:.0f} pages/s = {total * PER_PAGE / elapsed:.0f} rows/s")
    print(f"latency        p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=DEFAULT_BOOKINGS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    args = parser.parse_args()
    print(
        f"settings: bookings={args.bookings} perPage={PER_PAGE} connections={args.connections} "
        f"duration={args.seconds}s (sandbox: child process, no latency, no rate limit)"
    )
    started = time.monotonic()
    with SandboxProcess(bookings=args.bookings, anchor_date="2026-11-20") as sandbox:
        print(f"sandbox start  {time.monotonic() - started:.2f} s (data generation included)")
        asyncio.run(run(sandbox.base_url, sandbox.api_key, args.seconds, args.connections))


if __name__ == "__main__":
    main()
