"""Write-back of reschedules and cancellations: change set -> plan -> ledger -> apply.

``plan`` and ``apply`` (which need the HTTP client) load on first use, so parsing a change set
or reading the ledger does not import the client.
"""

import importlib
from typing import TYPE_CHECKING

from jicoo_connector.changes.changeset import (
    Action,
    Change,
    ParsedChangeSet,
    RejectedRow,
    parse_changeset,
    write_rejected_csv,
)
from jicoo_connector.changes.ledger import (
    BatchMismatchError,
    ChangeState,
    Ledger,
    LedgerBusyError,
    LedgerEntry,
    LedgerError,
    LedgerNotFoundError,
    StaleLeaseError,
)

if TYPE_CHECKING:
    from jicoo_connector.changes.apply import (
        ApplyReport,
        ApplyRow,
        apply_changeset,
        apply_changeset_async,
    )
    from jicoo_connector.changes.plan import (
        Plan,
        PlanError,
        PlannedChange,
        Verdict,
        build_plan,
        plan_changeset,
    )
    from jicoo_connector.changes.run import ChangesetRun, run_changeset

__all__ = [
    "Action",
    "ApplyReport",
    "ApplyRow",
    "BatchMismatchError",
    "Change",
    "ChangeState",
    "ChangesetRun",
    "Ledger",
    "LedgerBusyError",
    "LedgerEntry",
    "LedgerError",
    "LedgerNotFoundError",
    "ParsedChangeSet",
    "Plan",
    "PlanError",
    "PlannedChange",
    "RejectedRow",
    "StaleLeaseError",
    "Verdict",
    "apply_changeset",
    "apply_changeset_async",
    "build_plan",
    "parse_changeset",
    "plan_changeset",
    "run_changeset",
    "write_rejected_csv",
]

_LAZY = {
    "ApplyReport": "apply",
    "ApplyRow": "apply",
    "apply_changeset": "apply",
    "apply_changeset_async": "apply",
    "Plan": "plan",
    "PlanError": "plan",
    "PlannedChange": "plan",
    "Verdict": "plan",
    "build_plan": "plan",
    "plan_changeset": "plan",
    "ChangesetRun": "run",
    "run_changeset": "run",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"jicoo_connector.changes.{module}"), name)
