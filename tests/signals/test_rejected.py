"""Rows that did not go through are visible (exit 1; in Dagster a WARN check that fails, with the
counts and the file to fix) and resubmittable: FILE.rejected.csv, fixed in place, is applied as
is (its error_* columns are ignored), and nothing is applied twice."""

import csv
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import NAMES, definitions
from tests.signals.support import environment, run
from tests.support.writeback_data import booking, build_csv, effective_posts

TYPO = "Asia/Tokio"
APPLY_LOG_KEY = NAMES.asset_key("apply_log")
APPLY_LOG_OP = NAMES.op("apply_log")


def _changes_with_a_typo(sandbox: SandboxServer, path: Path) -> tuple[str, list[str]]:
    """Two cancels and one reschedule whose zone is misspelt: the uid of that one, all uids."""
    text, uids = build_csv(sandbox, reschedules=1, cancels=2)
    path.write_text(text.replace(",Asia/Tokyo,", f",{TYPO},", 1), encoding="utf-8")
    return uids[0], uids


def _rejected(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))


def _fix_in_place(path: Path) -> None:
    """What a user does in a spreadsheet: the bad cell corrected, the rest left as it is."""
    text = path.read_text(encoding="utf-8-sig")
    path.write_text(text.replace(f",{TYPO},", ",Asia/Tokyo,"), encoding="utf-8-sig")


@pytest.mark.system_clock("the CLI refuses reschedule targets in the past by the system clock")
def test_a_rejected_csv_fixed_in_place_is_resubmitted_as_is(
    system_sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox = system_sandbox  # the CLI reads the system clock ("in the past")
    changes = tmp_path / "orders.csv"
    moved, uids = _changes_with_a_typo(sandbox, changes)
    before = booking(sandbox, moved)["startedAt"]
    env = environment(sandbox, tmp_path)
    paths = ["--ledger", str(tmp_path / "ledger.sqlite"), "--apply-log", str(tmp_path / "log")]

    first = run("apply", str(changes), *paths, env=env, cwd=tmp_path)
    assert first.returncode == 1
    rejected = tmp_path / "orders.rejected.csv"
    assert f"1 rows did not go through; fix and resubmit {rejected}" in first.stdout
    (row,) = _rejected(rejected)
    assert (row["booking_uid"], row["error_column"]) == (moved, "time_zone")
    assert row["error_reason"] == f"unknown IANA time zone {TYPO!r}"

    _fix_in_place(rejected)
    again = run("apply", str(rejected), *paths, env=env, cwd=tmp_path)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "unknown column" not in again.stdout + again.stderr
    assert booking(sandbox, moved)["startedAt"] != before
    assert effective_posts(sandbox) == Counter(uids)  # the two cancels once, the move once
    assert not (tmp_path / "orders.rejected.rejected.csv").exists()


@pytest.mark.system_clock(
    "the write-back job refuses reschedule targets in the past by the system clock"
)
def test_in_dagster_rows_that_did_not_go_through_fail_a_warn_check_with_the_file_to_fix(
    system_sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox = system_sandbox  # the job reads the system clock
    changes = tmp_path / "orders.csv"
    moved, uids = _changes_with_a_typo(sandbox, changes)
    changes.write_text(changes.read_text("utf-8") + ",cancel,nosuchbooking1,,,gone\n", "utf-8")
    job = definitions(sandbox, tmp_path).resolve_job_def(NAMES.job("apply_changeset"))

    def apply(path: Path) -> dg.ExecuteInProcessResult:
        config = {"path": str(path), "concurrency": 2}
        return job.execute_in_process(run_config={"ops": {APPLY_LOG_OP: {"config": config}}})

    result = apply(changes)

    assert result.success  # the run did its job; the rows are the user's to fix
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    rows = checks["every_row_went_through"]
    assert rows.asset_key == APPLY_LOG_KEY
    assert not rows.passed
    assert rows.severity is dg.AssetCheckSeverity.WARN
    rejected = tmp_path / "orders.rejected.csv"
    assert rows.metadata["jicoo/rejected_path"] == dg.MetadataValue.path(str(rejected))
    assert rows.metadata["jicoo/rows_not_done"] == dg.IntMetadataValue(2)
    assert rows.metadata["jicoo/state/rejected"] == dg.IntMetadataValue(1)
    assert rows.metadata["jicoo/state/conflict"] == dg.IntMetadataValue(1)
    assert rows.metadata["jicoo/rows"] == dg.IntMetadataValue(len(uids) + 1)
    assert checks["no_change_in_flight"].passed

    _fix_in_place(rejected)
    resubmitted = apply(rejected)

    assert resubmitted.success
    checks = {e.check_name: e for e in resubmitted.get_asset_check_evaluations()}
    # The fixed row went through; the unknown booking is still unknown, and says so again.
    assert checks["every_row_went_through"].metadata["jicoo/state/conflict"] == (
        dg.IntMetadataValue(1)
    )
    assert "jicoo/state/rejected" not in checks["every_row_went_through"].metadata
    assert effective_posts(sandbox) == Counter(uids)
    assert booking(sandbox, moved)["status"] == "open"
