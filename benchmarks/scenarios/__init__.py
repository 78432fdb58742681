"""Every scenario of `benchmarks/run.py`, one module each, in the order they run.

A scenario runs its tools (``run``, given the run's ``Context``) and states its own targets
over the results it returned (``targets``).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness.measure import Context
from harness.report import Target


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Context], dict[str, object]]
    targets: Callable[[Mapping[str, object]], list[Target]]
    # Left out of --quick unless named with --only (minutes of daemon time, a million rows).
    in_quick: bool = True


def all_scenarios() -> list[Scenario]:
    # Imported here: each module imports the harness, which imports the sandbox and pyarrow.
    from scenarios import (
        contacts,
        dagster,
        extract,
        memory,
        million,
        throttled,
        warehouse,
        webhooks,
        writeback,
    )

    return [
        *extract.SCENARIOS,
        million.SCENARIO,
        memory.SCENARIO,
        throttled.SCENARIO,
        contacts.SCENARIO,
        writeback.SCENARIO,
        warehouse.SCENARIO,
        webhooks.SCENARIO,
        dagster.SCENARIO,
    ]
