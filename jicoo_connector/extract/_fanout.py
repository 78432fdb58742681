"""Bounded concurrent calls (fan-out) and the reports they add up to."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from jicoo_connector.client import (
    FetchReport,
)
from jicoo_connector.errors import (
    PermissionDeniedError,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


def bounded(
    limit: int,
) -> Callable[[Callable[[_T], Awaitable[_R]], Sequence[_T]], Awaitable[list[_R]]]:
    async def run(fn: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
        semaphore = asyncio.Semaphore(limit)

        async def one(item: _T) -> _R:
            async with semaphore:
                return await fn(item)

        # A TaskGroup cancels the siblings when one call fails (a 403 stops the fan-out); its
        # ExceptionGroup is unwrapped so callers handle the API's errors as usual.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(item)) for item in items]
        except ExceptionGroup as failed:
            raise _first_error(failed) from None
        return [task.result() for task in tasks]

    return run


def _first_error(group: ExceptionGroup[Exception]) -> Exception:
    leaves = list(_leaves(group))
    denied = [exc for exc in leaves if isinstance(exc, PermissionDeniedError)]
    first = (denied or leaves)[0]
    if len(leaves) > 1:
        first.add_note(f"{len(leaves) - 1} sibling call(s) failed too")
    return first


def _leaves(group: ExceptionGroup[Exception]) -> Iterator[Exception]:
    for exc in group.exceptions:
        if isinstance(exc, ExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def merged(*reports: FetchReport) -> FetchReport:
    # FetchReport.merge adds in place; a fresh total leaves the listings' own reports untouched.
    total = FetchReport()
    for report in reports:
        total.merge(report)
    return total


def wall_clocked(calls: FetchReport, started: float) -> FetchReport:
    # The calls ran concurrently: their summed elapsed times are not how long the fan-out took.
    calls.elapsed_s = time.monotonic() - started
    return calls
