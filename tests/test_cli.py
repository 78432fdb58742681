"""The `jicoo` command end to end against the sandbox: exit codes, files written, nothing lost."""

import csv
import socket
import sys
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from jicoo_connector.changes import DEFAULT_APPLY_CONCURRENCY, is_postgres_url
from jicoo_connector.changes._ledger import SCHEMA_VERSION
from jicoo_connector.changes._ledger_backends import POSTGRES_SCHEMA
from jicoo_connector.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, main
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.extract import TABLES
from jicoo_sandbox.server import SandboxServer
from tests.support.writeback_data import HEADER, booking, build_csv, future_open_bookings

LEDGER_URL_ENV = ConnectorConfig.specs()["ledger_url"].env


def _cli_on(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    monkeypatch.setenv("JICOO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", "200")
    monkeypatch.setenv("JICOO_BURST", "200")
    return sandbox


@pytest.fixture
def api_env(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The CLI on the session's sandbox, on the test day (``JICOO_TEST_TODAY``)."""
    return _cli_on(sandbox, monkeypatch)


@pytest.fixture
def system_api_env(system_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """For reschedules: the CLI refuses a target in the past by the system clock, so the slots
    a test picks must be ahead of it too: a sandbox on the system clock."""
    return _cli_on(system_sandbox, monkeypatch)


# The mark of each test that reschedules through the CLI.
RESCHEDULES = pytest.mark.system_clock(
    "the CLI refuses reschedule targets in the past by the system clock"
)


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


@RESCHEDULES
def test_apply_exit_codes_rejected_rows_and_rerun(
    system_api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_env = system_api_env
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


@RESCHEDULES
def test_clean_batch_exits_0_and_undo_restores(
    system_api_env: SandboxServer,
    tmp_path: Path,
    ledger_location: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api_env = system_api_env
    ledger: list[str] = []
    log = ["--apply-log", str(tmp_path / "log")]
    if is_postgres_url(ledger_location):
        # The deployment's way: the URL in JICOO_LEDGER_URL, with a password that must never
        # be printed (the test server trusts loopback, so any password is accepted).
        monkeypatch.setenv(LEDGER_URL_ENV, ledger_location.replace("postgres@", "postgres:s3cret@"))
    else:
        ledger = ["--ledger", ledger_location]
    text, uids = build_csv(api_env, reschedules=1, cancels=0)
    original = booking(api_env, uids[0])
    changes = tmp_path / "move.csv"
    changes.write_text(text, encoding="utf-8")
    assert main(["apply", str(changes), *ledger, *log]) == EXIT_OK
    assert booking(api_env, uids[0])["startedAt"] != original["startedAt"]

    assert main(["ledger", "status", "move", *ledger]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"schema version {SCHEMA_VERSION}" in out
    assert "applied               1" in out
    assert "s3cret" not in out
    undo = tmp_path / "undo.csv"
    assert main(["ledger", "undo", "move", *ledger, "--out", str(undo)]) == EXIT_OK
    rows = list(csv.DictReader(undo.read_text(encoding="utf-8").splitlines()))
    assert [r["booking_uid"] for r in rows] == uids
    assert main(["apply", str(undo), *ledger, *log]) == EXIT_OK
    assert booking(api_env, uids[0])["startedAt"] == original["startedAt"]
    assert "s3cret" not in "".join(capsys.readouterr())


@pytest.mark.parametrize("command", ["status", "undo"])
def test_ledger_commands_where_there_is_no_ledger_exit_2_and_create_nothing(
    tmp_path: Path,
    ledger_location: str,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An empty database (the Postgres case: a fresh one) or no file at all.
    monkeypatch.setenv(LEDGER_URL_ENV, ledger_location.replace("postgres@", "postgres:s3cret@"))
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert main(["ledger", command, "move"]) == EXIT_UNUSABLE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "no ledger at" in err
    assert "s3cret" not in err
    assert sorted(tmp_path.iterdir()) == before  # no ledger file, no undo CSV
    if is_postgres_url(ledger_location):
        with psycopg.connect(ledger_location) as conn:
            schemas = conn.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                (POSTGRES_SCHEMA,),
            ).fetchone()
        assert schemas == (0,)


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


def test_webhook_serve_without_a_secret_says_which_variable_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JICOO_WEBHOOK_SECRET", " , ")
    code = main(["webhook", "serve", "--port", "0", "--db", str(tmp_path / "events.sqlite")])
    assert code == EXIT_UNUSABLE
    assert "set JICOO_WEBHOOK_SECRET" in capsys.readouterr().err
    assert not (tmp_path / "events.sqlite").exists()


@pytest.mark.parametrize("missing", ["starlette", "uvicorn"])
def test_webhook_serve_without_the_extra_names_it_in_one_line(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if jicoo-connector were installed without [webhooks]: the package and every submodule
    # already loaded (the sandbox fixture's, say) fail to import.
    for name in [missing, *(n for n in sys.modules if n.startswith(f"{missing}."))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "jicoo_connector.webhooks._receiver", raising=False)
    monkeypatch.setenv("JICOO_WEBHOOK_SECRET", "whsec_test")
    with pytest.raises(SystemExit) as exit_info:
        main(["webhook", "serve", "--port", "0", "--db", str(tmp_path / "events.sqlite")])
    message = str(exit_info.value.code)
    assert message == (
        f"jicoo webhook serve needs {missing}, which comes with the webhooks extra: "
        "pip install 'jicoo-connector[webhooks]'"
    )
    assert not (tmp_path / "events.sqlite").exists()


# -- the first hour: every user mistake is one line, never a traceback -------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_extract_without_tables_extracts_every_table(
    api_env: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wh"
    # The sandbox's day, not the CLI's default (the system clock's today).
    day = str(api_env.store.anchor)
    assert main(["extract", "--start", day, "--out", str(out), "--quiet"]) == EXIT_OK
    printed = capsys.readouterr().out
    for table in TABLES:
        assert list((out / table).rglob("*.parquet")), table
        assert table in printed


def test_a_bad_zone_is_a_usage_error_as_flag_and_as_variable(
    api_env: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit) as flag:
        main(["extract", "--timezone", "Tokyo", "--out", str(tmp_path)])
    assert flag.value.code == EXIT_UNUSABLE
    assert "'Tokyo' is not an IANA time zone" in capsys.readouterr().err
    monkeypatch.setenv("JICOO_TIMEZONE", "Tokyo")
    assert main(["extract", "--out", str(tmp_path)]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert err == (
        "jicoo: JICOO_TIMEZONE='Tokyo': 'Tokyo' is not an IANA time zone (for example Asia/Tokyo)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["apply", "{tmp}/nofile.csv"], "nofile.csv: cannot read the change set"),
        (["ledger", "status", "b1", "--ledger", "{tmp}/none.sqlite"], "no ledger at"),
        (["extract", "--start", "2026-02-30"], "is not a date"),
        (["apply", "{tmp}/c.csv", "--plan", "{tmp}/missing.plan.json"], "nothing was sent"),
        (["ledger", "undo", "b1", "--ledger", "{tmp}/l.sqlite", "--out", "{tmp}/no/u.csv"], "no"),
    ],
)
def test_missing_or_bad_files_are_one_line_and_exit_2(
    api_env: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "c.csv").write_text(f"{HEADER}\n,cancel,nosuchbooking1,,,x\n", encoding="utf-8")
    if "undo" in argv:  # a real batch, so only the --out folder is wrong
        assert main(["apply", str(tmp_path / "c.csv"), "--batch-id", "b1", *_paths(tmp_path)])
        capsys.readouterr()
    args = [arg.format(tmp=tmp_path) for arg in argv]
    try:
        code = main([*args, *(_paths(tmp_path)[2:] if args[0] == "apply" else [])])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(str(exc.code))
    assert code == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert _posts(api_env) == []


# Slow tier: the client retries a refused connection with backoff (about 13 s).
@pytest.mark.slow
def test_an_unreachable_host_is_named_and_nothing_is_sent(
    api_env: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("JICOO_BASE_URL", nowhere)
    uid = future_open_bookings(api_env)[0]["uid"]
    changes = tmp_path / "c.csv"
    changes.write_text(f"{HEADER}\n,cancel,{uid},,,x\n", encoding="utf-8")
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_SOME_FAILED
    out = capsys.readouterr().out
    assert "nothing was sent" in out
    assert f"could not connect to {nowhere}" in out
    assert "(applied)" not in out


def test_a_wrong_key_says_nothing_was_sent_and_exits_2(
    api_env: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JICOO_API_KEY", "sk_wrong_key")
    uids = [b["uid"] for b in future_open_bookings(api_env)[:3]]
    changes = tmp_path / "wrongkey.csv"
    changes.write_text(
        HEADER + "\n" + "".join(f",cancel,{uid},,,x\n" for uid in uids), encoding="utf-8"
    )
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_UNUSABLE
    captured = capsys.readouterr()
    assert "nothing was sent" in captured.out
    assert "(applied)" not in captured.out
    assert "refused JICOO_API_KEY" in captured.err
    assert "sk_wrong_key" not in captured.out + captured.err
    assert _posts(api_env) == []
    # One 401 is enough to know: the other rows are not read with the same key.
    assert len(api_env.requests()) <= DEFAULT_APPLY_CONCURRENCY


def test_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox's own check is in tests/sandbox/test_cli.py; this is the webhook receiver's.
    monkeypatch.setenv("JICOO_WEBHOOK_SECRET", "whsec_test")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        db = tmp_path / "events.sqlite"
        assert main(["webhook", "serve", "--port", str(port), "--db", str(db)]) == EXIT_UNUSABLE
    assert capsys.readouterr().err == (
        f"jicoo: port {port} on 127.0.0.1 is in use; pick another (--port 0: any)\n"
    )


@RESCHEDULES
def test_every_row_that_did_not_go_through_is_in_rejected_csv(
    system_api_env: SandboxServer, tmp_path: Path
) -> None:
    api_env = system_api_env
    text, uids = build_csv(api_env, reschedules=1, cancels=1)
    changes = tmp_path / "mixed.csv"
    changes.write_text(
        text + ",cancel,nosuchbooking1,,,x\n" + ",cancel,,,,no uid\n", encoding="utf-8"
    )
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_SOME_FAILED
    rejected_text = (tmp_path / "mixed.rejected.csv").read_text(encoding="utf-8-sig")
    rejected = list(csv.DictReader(rejected_text.splitlines()))
    assert [(r["error_row"], r["booking_uid"]) for r in rejected] == [
        ("4", "nosuchbooking1"),
        ("5", ""),
    ]
    assert rejected[0]["error_reason"] == "conflict: booking not found"
    assert rejected[0]["cancel_reason"] == "x"  # the row as the user wrote it
    assert sorted(e["booking_uid"] for e in _posts(api_env)) == sorted(uids)


@RESCHEDULES
def test_an_offset_needs_no_time_zone_and_keeps_the_bookings_zone(
    system_api_env: SandboxServer, tmp_path: Path
) -> None:
    api_env = system_api_env
    text, (uid,) = build_csv(api_env, reschedules=1, cancels=0)
    zone = booking(api_env, uid)["timeZone"]
    changes = tmp_path / "offset.csv"
    changes.write_text(text.replace(",Asia/Tokyo,", ",,"), encoding="utf-8")
    assert main(["apply", str(changes), *_paths(tmp_path)]) == EXIT_OK
    (post,) = _posts(api_env)
    assert post["changed"]
    assert booking(api_env, uid)["timeZone"] == zone
