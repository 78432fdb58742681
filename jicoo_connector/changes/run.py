"""The one write-back entry the CLI and the Dagster asset share: parse, plan or apply, then the
files next to the change set (``*.plan.json``, ``*.rejected.csv``) and the apply log.

Imports changeset, plan and apply; prints nothing (callers say what happened their own way).
"""

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jicoo_connector.changes.apply import (
    DEFAULT_APPLY_CONCURRENCY,
    ApplyReport,
    PointHook,
    apply_changeset,
)
from jicoo_connector.changes.changeset import (
    ParsedChangeSet,
    RejectedRow,
    parse_changeset,
    write_rejected_csv,
)
from jicoo_connector.changes.plan import Plan, Verdict, build_plan
from jicoo_connector.settings import Settings

__all__ = ["DONE_STATES", "ChangesetRun", "default_batch_id", "run_changeset"]

# A row that ends in any other state goes to *.rejected.csv with its reason.
DONE_STATES = frozenset({"applied", "already_applied"})
PLANNED_OK = frozenset({Verdict.WILL_APPLY, Verdict.ALREADY_IN_TARGET})


def default_batch_id(path: Path) -> str:
    return path.stem


@dataclass(frozen=True, slots=True)
class ChangesetRun:
    """What one run did. ``plan`` for a dry run, ``report`` and ``apply_log`` for an apply."""

    path: Path
    batch_id: str
    parsed: ParsedChangeSet
    plan: Plan | None
    plan_path: Path | None
    report: ApplyReport | None
    apply_log: Path | None
    not_done: list[RejectedRow]
    rejected_path: Path | None

    @property
    def ok(self) -> bool:
        """Every row applied, already in target, or (dry run) planned to be."""
        return not self.not_done


def rejected_path_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejected.csv")


def _back_to_user(
    parsed: ParsedChangeSet, failures: Iterable[tuple[int, str]]
) -> list[RejectedRow]:
    """(row, reason) of valid rows that did not go through, as rows of *.rejected.csv."""
    cells = {change.row: change.cells for change in parsed.changes}
    return [
        RejectedRow(row=row, column=None, reason=reason, cells=cells[row])
        for row, reason in failures
        if row in cells
    ]


def run_changeset(
    settings: Settings,
    path: str | os.PathLike[str],
    *,
    ledger_location: str | os.PathLike[str],
    apply_log_root: str | os.PathLike[str],
    batch_id: str | None = None,
    dry_run: bool = False,
    plan_path: str | os.PathLike[str] | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    encoding: str | None = None,
    strict: bool = False,
    on_point: PointHook | None = None,
) -> ChangesetRun:
    """Validate ``path``, then plan it (``dry_run``: writes ``FILE.plan.json``, sends nothing)
    or apply it through the ledger at ``ledger_location`` (an SQLite file or a postgresql://
    URL; writes one apply-log Parquet file per run).

    Every row that did not end applied or already in target (rejected by the parser, refused
    by the plan, conflict, failed, not sent) is written to ``FILE.rejected.csv`` in the
    input's shape plus its reason. A file-level problem raises ``ChangeSetError`` before any
    request; nothing is applied then. ``on_point`` goes to ``apply_changeset``.
    """
    source = Path(path)
    parsed = parse_changeset(source, encoding=encoding, strict=strict)
    batch = batch_id or default_batch_id(source)
    plan: Plan | None = None
    written_plan: Path | None = None
    report: ApplyReport | None = None
    log: Path | None = None
    if dry_run:
        plan = build_plan(settings, parsed, concurrency=concurrency)
        written_plan = plan.write(source.with_name(f"{source.stem}.plan.json"))
        not_done = _back_to_user(
            parsed,
            (
                (i.row, f"{i.verdict}: {i.reason}")
                for i in plan.items
                if i.verdict not in PLANNED_OK
            ),
        )
    else:
        report = apply_changeset(
            settings,
            parsed,
            ledger_location=ledger_location,
            batch_id=batch,
            plan=Plan.read(plan_path) if plan_path is not None else None,
            concurrency=concurrency,
            on_point=on_point,
        )
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        log = report.write_parquet(Path(apply_log_root) / f"batch={batch}" / f"run-{stamp}.parquet")
        not_done = _back_to_user(
            parsed,
            (
                (r.row, f"{r.state}: {r.reason}" if r.reason else r.state)
                for r in report.rows
                if r.state not in DONE_STATES
            ),
        )
    rejected: Path | None = None
    if parsed.rejected or not_done:
        rejected = rejected_path_for(source)
        write_rejected_csv(rejected, parsed, not_done)
    return ChangesetRun(
        path=source,
        batch_id=batch,
        parsed=parsed,
        plan=plan,
        plan_path=written_plan,
        report=report,
        apply_log=log,
        not_done=[*parsed.rejected, *not_done],
        rejected_path=rejected,
    )
