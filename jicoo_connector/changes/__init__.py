"""Write-back of reschedules and cancellations: change set -> plan -> ledger -> apply.

The flows' entry points: ``run_changeset`` (a file: validate, then plan or apply, and write the
files beside it; the CLI and the Dagster asset use it), ``plan_changeset`` and
``apply_changeset`` (a parsed change set; ``*_async`` are their coroutines); ``scan_inbox``
and ``read_inbox_file`` (what of an inbox folder may be applied, read without following
anything out of it). Every module
inside is private: import from here. The errors are in ``jicoo_connector.errors``.
"""

from jicoo_connector.changes._apply import (
    DEFAULT_APPLY_CONCURRENCY,
    apply_changeset,
    apply_changeset_async,
)
from jicoo_connector.changes._apply_log import APPLY_LOG
from jicoo_connector.changes._changeset import (
    Action,
    Change,
    ParsedChangeSet,
    RejectedRow,
    parse_changeset,
    write_rejected_csv,
)
from jicoo_connector.changes._inbox import (
    OUTPUT_SUFFIXES,
    InboxFile,
    InboxScan,
    SkippedEntry,
    read_inbox_file,
    scan_inbox,
)
from jicoo_connector.changes._ledger import Lease, Ledger, LedgerEntry
from jicoo_connector.changes._ledger_backends import is_postgres_url
from jicoo_connector.changes._machine import (
    DONE_STATES,
    FINAL_STATES,
    IN_FLIGHT_STATES,
    State,
    Verdict,
)
from jicoo_connector.changes._plan import Plan, PlannedChange, plan_changeset, plan_changeset_async
from jicoo_connector.changes._report import ApplyReport, ApplyRow, RunTally
from jicoo_connector.changes._run import ChangesetRun, default_batch_id, run_changeset

__all__ = [
    "APPLY_LOG",
    "DEFAULT_APPLY_CONCURRENCY",
    "DONE_STATES",
    "FINAL_STATES",
    "IN_FLIGHT_STATES",
    "OUTPUT_SUFFIXES",
    "Action",
    "ApplyReport",
    "ApplyRow",
    "Change",
    "ChangesetRun",
    "InboxFile",
    "InboxScan",
    "Lease",
    "Ledger",
    "LedgerEntry",
    "ParsedChangeSet",
    "Plan",
    "PlannedChange",
    "RejectedRow",
    "RunTally",
    "SkippedEntry",
    "State",
    "Verdict",
    "apply_changeset",
    "apply_changeset_async",
    "default_batch_id",
    "is_postgres_url",
    "parse_changeset",
    "plan_changeset",
    "plan_changeset_async",
    "read_inbox_file",
    "run_changeset",
    "scan_inbox",
    "write_rejected_csv",
]
