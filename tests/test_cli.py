"""The `jicoo` command end to end against the sandbox: exit codes, files written, nothing lost."""

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jicoo_connector.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, main
from jicoo_connector.sandbox.server import SandboxServer
from tests.writeback_data import HEADER, booking, build_csv, future_open_bookings


@pytest.fixture
def api_env(system_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The CLI decides "in the past" by the system clock: a sandbox on it."""
    sandbox = system_sandbox
    monkeypatch.setenv("JICOO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", "200")
    monkeypatch.setenv("JICOO_BURST", "200")
    return sandbox


def _paths(tmp_path: Path) -> list[str]:
    """Every apply writes its ledger and apply log under the test's own folder."""
    return ["--ledger", str(tmp_path / "ledger.sqlite"), "--apply-log", str(tmp_path / "log")]


def _posts(sandbox: SandboxServer) -> list[dict[str, object]]:
    return [e for e in sandbox.store.journal() if e["method"] == "POST"]


def test_unusable_file_exits_2_and_sends_nothing(
    api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"action,booking_uid\x00\ncancel,abc\n")
    code = main(["apply", str(bad), *_paths(tmp_path)])
    assert code == EXIT_UNUSABLE
    assert "nothing applied" in capsys.readouterr().err
    assert _posts(api_env) == []
    assert not (tmp_path / "ledger.sqlite").exists()


def test_apply_exit_codes_rejected_rows_and_rerun(
    api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, uids = build_csv(api_env, reschedules=1, cancels=2)
    changes = tmp_path / "batch.csv"
    changes.write_text(text + ",cancel,,,,no uid here\n", encoding="utf-8")
    ledger = tmp_path / "ledger.sqlite"
    args = ["apply", str(changes), "--ledger", str(ledger), "--apply-log", str(tmp_path / "log")]

    assert main([*args, "--dry-run"]) == EXIT_SOME_FAILED  # one row is rejected
    assert _posts(api_env) == []
    assert (tmp_path / "batch.plan.json").exists()

    assert main(args) == EXIT_SOME_FAILED
    out = capsys.readouterr().out
    assert "row 5, column booking_uid" in out
    rejected_text = (tmp_path / "batch.rejected.csv").read_text(encoding="utf-8-sig")
    rejected = list(csv.DictReader(rejected_text.splitlines()))
    assert [r["error_column"] for r in rejected] == ["booking_uid"]
    changed = [e["booking_uid"] for e in _posts(api_env) if e["changed"]]
    assert sorted(changed) == sorted(uids)  # every good row applied once
    logs = list((tmp_path / "log").rglob("*.parquet"))
    assert len(logs) == 1
    assert pq.read_table(logs[0]).num_rows == 4

    before = len(_posts(api_env))
    assert main(args) == EXIT_SOME_FAILED  # the rejected row is still rejected
    assert len(_posts(api_env)) == before  # ...and the re-run sends nothing


def test_clean_batch_exits_0_and_undo_restores(
    api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, uids = build_csv(api_env, reschedules=1, cancels=0)
    original = booking(api_env, uids[0])
    changes = tmp_path / "move.csv"
    changes.write_text(text, encoding="utf-8")
    ledger = tmp_path / "ledger.sqlite"
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_OK
    assert booking(api_env, uids[0])["startedAt"] != original["startedAt"]

    assert main(["ledger", "status", "move", "--ledger", str(ledger)]) == EXIT_OK
    assert "applied" in capsys.readouterr().out
    undo = tmp_path / "undo.csv"
    assert main(["ledger", "undo", "move", "--ledger", str(ledger), "--out", str(undo)]) == EXIT_OK
    rows = list(csv.DictReader(undo.read_text(encoding="utf-8").splitlines()))
    assert [r["booking_uid"] for r in rows] == uids
    assert main(["apply", str(undo), *_paths(tmp_path)]) == EXIT_OK
    assert booking(api_env, uids[0])["startedAt"] == original["startedAt"]


def test_changed_file_under_same_batch_id_is_refused(
    api_env: SandboxServer, tmp_path: Path
) -> None:
    first, second = future_open_bookings(api_env)[:2]
    changes = tmp_path / "same.csv"
    changes.write_text(f"{HEADER}\n,cancel,{first['uid']},,,x\n", encoding="utf-8")
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_OK
    changes.write_text(f"{HEADER}\n,cancel,{second['uid']},,,x\n", encoding="utf-8")
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_UNUSABLE
    assert booking(api_env, str(second["uid"]))["status"] == "open"


def test_extract_writes_partitions_and_counts(
    api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = api_env.store.anchor
    out = tmp_path / "wh"
    code = main(
        [
            "extract",
            "--tables",
            "bookings",
            "users",
            "--start",
            str(day),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == EXIT_OK
    printed = capsys.readouterr().out
    assert (out / "bookings" / f"day={day}" / "data.parquet").exists()
    users_rows = pq.read_table(next((out / "users").rglob("*.parquet"))).num_rows
    assert users_rows == len(api_env.store.users())
    assert f"users {users_rows:>24} rows" in " ".join(printed.split()) or str(users_rows) in printed


def test_extract_rejects_unknown_table(api_env: SandboxServer, tmp_path: Path) -> None:
    assert main(["extract", "--tables", "nope", "--out", str(tmp_path)]) == EXIT_UNUSABLE
