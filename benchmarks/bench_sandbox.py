"""Throughput of the sandbox as a child process: pages/s of perPage=100, cold and warm.

A *cold* page holds bookings never served before (the extract benchmarks read each booking
once, so every page they read is cold); a *warm* page was served before. Each round reads a
fresh range of pages cold, first with one connection, then with ``--connections`` at once, then
reads the same pages again warm both ways. The client is a minimal keep-alive HTTP/1.1 client on
asyncio streams, so that what is measured is the server, not an HTTP library.

Run: .venv/bin/python benchmarks/bench_sandbox.py [--bookings 50000 1000000] [--rounds R]
     [--pages P] [--connections C]
"""

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from jicoo_sandbox.config import DEFAULT_SANDBOX_KEY
from jicoo_sandbox.server import SandboxProcess

PER_PAGE = 100
DEFAULT_BOOKINGS = (50_000, 1_000_000)
DEFAULT_ROUNDS = 3
DEFAULT_PAGES = 200  # per phase; a round reads 2 x this many cold pages
DEFAULT_CONNECTIONS = 8
ANCHOR_DATE = "2026-11-20"
HEADER_END = b"\r\n\r\n"
OK_STATUS_LINE = b"HTTP/1.1 200"
CONTENT_LENGTH = b"content-length:"
PHASES = ("cold sequential", "cold concurrent", "warm sequential", "warm concurrent")


class _Connection:
    """One keep-alive connection that GETs pages of bookings and checks each body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> "_Connection":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def page(self, page: int, host: str) -> None:
        request = (
            f"GET /v1/bookings?perPage={PER_PAGE}&page={page} HTTP/1.1\r\nHost: {host}\r\n"
            f"X-Jicoo-Api-Key: {DEFAULT_SANDBOX_KEY}\r\n\r\n"
        ).encode()
        self.writer.write(request)
        head = await self.reader.readuntil(HEADER_END)
        if not head.startswith(OK_STATUS_LINE):
            raise RuntimeError(f"page {page}: {head.splitlines()[0]!r}")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(CONTENT_LENGTH)
        )
        body = orjson.loads(await self.reader.readexactly(length))
        if len(body["data"]) != PER_PAGE:
            raise RuntimeError(f"page {page} held {len(body['data'])} bookings")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _read(host: str, port: int, pages: Sequence[int], connections: int) -> float:
    """Pages/s reading ``pages`` over ``connections`` keep-alive connections at once."""
    conns = [await _Connection.open(host, port) for _ in range(connections)]
    queue = list(reversed(pages))

    async def worker(conn: _Connection) -> None:
        while queue:
            await conn.page(queue.pop(), host)

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return len(pages) / elapsed


@dataclass
class _Results:
    starts: list[float] = field(default_factory=list)
    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    loads: list[float] = field(default_factory=list)


async def _round(
    host: str, port: int, first: int, per_phase: int, connections: int, results: _Results
) -> None:
    seq = range(first, first + per_phase)
    conc = range(first + per_phase, first + 2 * per_phase)
    results.rates["cold sequential"].append(await _read(host, port, seq, 1))
    results.rates["cold concurrent"].append(await _read(host, port, conc, connections))
    results.rates["warm sequential"].append(await _read(host, port, seq, 1))
    results.rates["warm concurrent"].append(await _read(host, port, conc, connections))
    results.loads.append(os.getloadavg()[0])


def _start(bookings: int, results: _Results) -> SandboxProcess:
    started = time.perf_counter()
    sandbox = SandboxProcess(bookings=bookings, anchor_date=ANCHOR_DATE)
    sandbox.start()
    results.starts.append(time.perf_counter() - started)
    return sandbox


def bench(bookings: int, rounds: int, per_phase: int, connections: int) -> _Results:
    pages = bookings // PER_PAGE
    if 2 * per_phase > pages:
        raise SystemExit(f"--pages {per_phase} needs at least {2 * per_phase * PER_PAGE} bookings")
    results = _Results()
    sandbox = _start(bookings, results)
    next_page = 1
    try:
        for _ in range(rounds):
            if next_page + 2 * per_phase - 1 > pages:
                # Every page was read: a fresh process makes them cold again.
                sandbox.stop()
                sandbox = _start(bookings, results)
                next_page = 1
            host, port = sandbox.base_url.removeprefix("http://").rsplit(":", 1)
            asyncio.run(_round(host, int(port), next_page, per_phase, connections, results))
            next_page += 2 * per_phase
    finally:
        sandbox.stop()
    return results


def _spread(values: list[float], unit: str, digits: int = 0) -> str:
    return (
        f"median {statistics.median(values):.{digits}f} {unit} "
        f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, nargs="+", default=list(DEFAULT_BOOKINGS))
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="pages per phase")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    args = parser.parse_args()
    print(
        f"settings: perPage={PER_PAGE} rounds={args.rounds} pages/phase={args.pages} "
        f"concurrent connections={args.connections} (sandbox: child process, no faults); "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    for bookings in args.bookings:
        results = bench(bookings, args.rounds, args.pages, args.connections)
        print(f"\n{bookings} bookings")
        print(f"  start (build included) {_spread(results.starts, 's', 2)}")
        for phase in PHASES:
            print(f"  {phase:<16} {_spread(results.rates[phase], 'pages/s')}")
        print(f"  load average (1 min) after rounds: {_spread(results.loads, '', 2)}")


if __name__ == "__main__":
    main()
