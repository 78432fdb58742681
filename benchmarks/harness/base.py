"""Paths, the sandbox's key, the environment of measured children, and small statistics."""

import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
PYTHON = sys.executable

SANDBOX_KEY = "sk_test_sandbox"
SANDBOX_SEED = 7
# The page size every tool asks for (the API's largest): the floor of a full extract's
# requests is ceil(bookings / PER_PAGE).
PER_PAGE = 100
KIB = 1024
CPU_PER_BOOKINGS = 10_000


def child_env(**extra: str) -> dict[str, str]:
    """The harness's environment without any JICOO_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JICOO_")}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median: how far apart the runs were, as a share of the median."""
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else None


def fmt(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"
