"""The tools compared: how each is started, and where it writes its rows."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.base import BENCH, PYTHON, SANDBOX_KEY, child_env
from harness.envs import env_python

# The sandbox spreads bookings over [anchor - 60 d, anchor + 30 d]; the extract window is wider
# by a margin so every tool extracts every booking and row counts can be compared exactly.
PAST_DAYS = 60
FUTURE_DAYS = 30
WINDOW_MARGIN_DAYS = 2
# Unthrottled scenarios: the sandbox has no limit, so our client's limiter is opened up.
# The naive script and dlt have no limiter at all.
OPEN_RATE_LIMIT = 10_000.0
OPEN_BURST = 1_000

OURS_LIB = "ours_lib"
OURS_CLI = "ours_cli"
NAIVE = "naive"
DLT = "dlt"


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date

    @classmethod
    def around(cls, anchor: dt.date) -> "Window":
        return cls(
            anchor - dt.timedelta(days=PAST_DAYS + WINDOW_MARGIN_DAYS),
            anchor + dt.timedelta(days=FUTURE_DAYS + WINDOW_MARGIN_DAYS),
        )


@dataclass(frozen=True)
class Tool:
    name: str
    describe: str
    argv: Callable[[str, Path, Window], list[str]]
    env: Callable[[str], dict[str, str]]
    rows_at: Callable[[Path], Path]
    # Further tables the tool writes under its output root: their rows go to ``extra``.
    other_tables: tuple[str, ...] = ()


def ours_lib_tool(
    tables: str = "bookings", rate: float = OPEN_RATE_LIMIT, burst: int = OPEN_BURST
) -> Tool:
    def argv(url: str, out: Path, window: Window) -> list[str]:
        return [
            *(PYTHON, str(BENCH / "ours.py"), "--base-url", url, "--out", str(out)),
            *("--tables", tables, "--start", window.start.isoformat()),
            *("--end", window.end.isoformat(), "--rate-limit", str(rate), "--burst", str(burst)),
        ]

    return Tool(
        name=OURS_LIB,
        describe=f"jicoo_connector.extract.extract_range, tables={tables}, client {rate} rps",
        argv=argv,
        env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
        rows_at=lambda out: out / "bookings",
        other_tables=tuple(t for t in tables.split(",") if t != "bookings"),
    )


def ours_cli_tool(rate: float = OPEN_RATE_LIMIT, burst: int = OPEN_BURST) -> Tool:
    def argv(url: str, out: Path, window: Window) -> list[str]:
        return [
            *(PYTHON, "-m", "jicoo_connector.cli", "extract", "--tables", "bookings"),
            *("--start", window.start.isoformat(), "--end", window.end.isoformat()),
            *("--out", str(out), "--quiet"),  # no progress bar: the other tools print nothing
        ]

    return Tool(
        name=OURS_CLI,
        describe=f"jicoo extract --tables bookings --quiet, JICOO_RATE_LIMIT={rate}",
        argv=argv,
        env=lambda url: child_env(
            JICOO_BASE_URL=url,
            JICOO_API_KEY=SANDBOX_KEY,
            JICOO_RATE_LIMIT=str(rate),
            JICOO_BURST=str(burst),
        ),
        rows_at=lambda out: out / "bookings",
    )


NAIVE_TOOL = Tool(
    name=NAIVE,
    describe="benchmarks/naive.py: sequential httpx pages of 100, pandas.to_parquet",
    argv=lambda url, out, w: [
        *(PYTHON, str(BENCH / "naive.py"), "--base-url", url),
        *("--out", str(out / "bookings.parquet")),
    ],
    env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
    rows_at=lambda out: out / "bookings.parquet",
)

DLT_TOOL = Tool(
    name=DLT,
    describe="benchmarks/dlt_extract.py: dlt rest_api, page_number paginator, filesystem/parquet",
    argv=lambda url, out, w: [
        *(str(env_python("dlt")), str(BENCH / "dlt_extract.py")),
        *("--base-url", url, "--out", str(out)),
    ],
    env=lambda url: child_env(JICOO_API_KEY=SANDBOX_KEY),
    rows_at=lambda out: out / "lake" / "jicoo" / "bookings",
)
