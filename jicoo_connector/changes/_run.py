"""The one write-back entry the CLI and the Dagster asset share: parse, plan or apply, then the
files next to the change set (``*.plan.json``, ``*.rejected.csv``) and the apply log.

Imports changeset, plan and apply; prints nothing (callers say what happened their own way).
"""

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jicoo_connector.changes._apply import DEFAULT_APPLY_CONCURRENCY, apply_changeset
from jicoo_connector.changes._changeset import (
    ParsedChangeSet,
    RejectedRow,
    parse_changeset,
    write_rejected_csv,
)
from jicoo_connector.changes._ledger import Ledger
from jicoo_connector.changes._machine import DONE_STATES
from jicoo_connector.changes._plan import Plan, plan_changeset
from jicoo_connector.changes._report import ApplyReport
from jicoo_connector.settings import Settings

__all__ = ["ChangesetRun", "default_batch_id", "run_changeset"]


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


def _planned(
    settings: Settings, source: Path, parsed: ParsedChangeSet, concurrency: int
) -> tuple[Plan, Path, list[RejectedRow]]:
    plan = plan_changeset(settings, parsed, concurrency=concurrency)
    written = plan.write(source.with_name(f"{source.stem}.plan.json"))
    refused = ((i.row, f"{i.verdict}: {i.reason}") for i in plan.items if i.refused)
    return plan, written, _back_to_user(parsed, refused)


def _not_done(report: ApplyReport, parsed: ParsedChangeSet) -> list[RejectedRow]:
    not_done = (
        (r.row, f"{r.state}: {r.reason}" if r.reason else r.state)
        for r in report.rows
        if r.state not in DONE_STATES
    )
    return _back_to_user(parsed, not_done)


@contextlib.contextmanager
def _after_the_ledger(report: ApplyReport | None, target: Path) -> Iterator[None]:
    """Writing ``target`` once the changes went through the ledger: if it fails after POSTs
    left, the run did part of its work (``ApplyIncompleteError``)."""
    try:
        yield
    except OSError as exc:
        if report is None or not report.posts_sent:
            raise
        raise report.tally.incomplete(
            f"the changes went through the ledger, but {target} could not be written "
            f"({exc.strerror or exc})",
            posts_sent=report.posts_sent,
            rerun=(
                "Re-running the same command is safe once it can write there: it sends "
                "nothing for a recorded change and writes the apply log and the rejected rows "
                "again."
            ),
        ) from exc


def run_changeset(
    settings: Settings,
    path: str | os.PathLike[str],
    *,
    ledger: str | os.PathLike[str] | Ledger,
    apply_log_root: str | os.PathLike[str],
    batch_id: str | None = None,
    dry_run: bool = False,
    plan_path: str | os.PathLike[str] | None = None,
    concurrency: int = DEFAULT_APPLY_CONCURRENCY,
    encoding: str | None = None,
    strict: bool = False,
    content: bytes | None = None,
) -> ChangesetRun:
    """Validate ``path``, then plan it (``dry_run``: writes ``FILE.plan.json``, sends nothing)
    or apply it through ``ledger`` (an SQLite file, a postgresql:// URL or an open ``Ledger``;
    writes one apply-log Parquet file per run).

    Every row that did not end applied or already in target (rejected by the parser, refused
    by the plan, conflict, failed, not sent) is written to ``FILE.rejected.csv`` in the
    input's shape plus its reason. A file-level problem raises ``ChangeSetError`` before any
    request; nothing is applied then. A failure after POSTs left (the ledger, the apply log,
    that file) raises ``ApplyIncompleteError`` with what was done. ``content``: bytes read."""
    source = Path(path)
    read: Path | bytes = source if content is None else content  # the inbox reads its own way
    parsed = parse_changeset(read, encoding=encoding, strict=strict)
    batch = batch_id or default_batch_id(source)
    if dry_run:
        plan, written_plan, not_done = _planned(settings, source, parsed, concurrency)
        report, log = None, None
    else:
        plan, written_plan = None, None
        report = apply_changeset(
            settings,
            parsed,
            ledger=ledger,
            batch_id=batch,
            plan=Plan.read(plan_path) if plan_path is not None else None,
            concurrency=concurrency,
        )
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        log = Path(apply_log_root) / f"batch={batch}" / f"run-{stamp}.parquet"
        with _after_the_ledger(report, log):
            report.write_parquet(log)
        not_done = _not_done(report, parsed)
    rejected = rejected_path_for(source) if parsed.rejected or not_done else None
    if rejected is not None:
        with _after_the_ledger(report, rejected):
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
