"""Bounded concurrent calls (fan-out) and the reports they add up to."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import anyio

from jicoo_connector._compat import ExceptionGroup, add_note
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

        results: dict[int, _R] = {}

        async def one(index: int, item: _T) -> None:
            async with semaphore:
                results[index] = await fn(item)

        # A task group cancels the siblings when one call fails (a 403 stops the fan-out); its
        # ExceptionGroup is unwrapped so callers handle the API's errors as usual.
        try:
            async with anyio.create_task_group() as group:
                for index, item in enumerate(items):
                    group.start_soon(one, index, item)
        except ExceptionGroup as failed:
            raise _first_error(failed) from None
        return [results[index] for index in range(len(items))]

    return run


def _first_error(group: ExceptionGroup[Exception]) -> Exception:
    leaves = list(_leaves(group))
    denied = [exc for exc in leaves if isinstance(exc, PermissionDeniedError)]
    first = (denied or leaves)[0]
    if len(leaves) > 1:
        add_note(first, f"{len(leaves) - 1} sibling call(s) failed too")
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
