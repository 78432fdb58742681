"""Every documented setting the CLI reads changes what it does: the CLI is run against the
sandbox and its files and requests are looked at (the code location's side, and the README's
table, are in tests/test_settings.py).
"""

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from jicoo_connector.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, build_parser, main
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.webhooks import READY_LINE_PREFIX, PostgresEventStore
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import sign
from tests.support.proxy import connect_proxy
from tests.support.raw_socket import GRACE_S, status_of, until_closed
from tests.support.setting_examples import RECEIVER_EXAMPLES, VARIABLES, example_value
from tests.support.webhook_receiver import event_body

# What the CLI has no use for (partitions, schedules and the inbox are Dagster's), or what it
# does not read itself.
NOT_IN_CLI = {
    # The Dagster names' prefix: the CLI makes no Dagster definitions.
    "JICOO_ORGANIZATION",
    "JICOO_PARTITION_START",
    "JICOO_FUTURE_DAYS",
    "JICOO_REFRESH_PAST_DAYS",
    "JICOO_REFRESH_FUTURE_DAYS",
    "JICOO_SWEEP_PAST_DAYS",
    "JICOO_CHANGESET_INBOX",
    "JICOO_WEBHOOK_INTERVAL_S",
    # Passed to the warehouse by the CLI and by the code location (tests/test_settings.py;
    # tests/warehouse/test_sql.py shows it reach libpq's URL); no password server runs here.
    "JICOO_WAREHOUSE_PASSWORD",
}
CLI_TESTED = {
    "JICOO_API_KEY",
    "JICOO_BASE_URL",
    "JICOO_RATE_LIMIT",
    "JICOO_BURST",
    "JICOO_TIMEZONE",
    "JICOO_WAREHOUSE_ROOT",
    "JICOO_LEDGER_PATH",
    "JICOO_APPLY_LOG_ROOT",
    "JICOO_WAREHOUSE_URL",
    "JICOO_DUCKDB_PATH",
    "JICOO_REQUEST_DEADLINE",
    "JICOO_PROXY_URL",
    "JICOO_CA_BUNDLE",
    "JICOO_TLS_TRUST",
    "JICOO_LEDGER_URL",
    "JICOO_WEBHOOK_SECRET",
    "JICOO_WEBHOOK_DB",
    "JICOO_WEBHOOK_DB_URL",
    *RECEIVER_EXAMPLES,
}
CHANGES = "action,booking_uid,new_started_at,time_zone,cancel_reason\ncancel,nosuchbooking1,,,x\n"


def test_every_variable_is_tested_in_the_cli_or_named_as_dagster_only() -> None:
    assert set(VARIABLES) == CLI_TESTED | NOT_IN_CLI
    assert not CLI_TESTED & NOT_IN_CLI


def test_help_shows_each_default_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    flags = {
        ("extract", "--out"): "warehouse_root",
        ("extract", "--timezone"): "timezone",
        ("apply", "--ledger"): "ledger_path",
        ("apply", "--apply-log"): "apply_log_root",
    }
    for (command, flag), name in flags.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        spec = ConnectorConfig.specs()[name]
        assert flag in text
        assert f"${spec.env}, else {getattr(ConnectorConfig(), name)}" in text


@pytest.fixture
def cli_env(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> SandboxServer:
    """The CLI on the session's sandbox with no JICOO_* variable but its key and URL."""
    for env in VARIABLES:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("JICOO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", "500")
    # Relative defaults land under the test's folder, never the repository's data/.
    monkeypatch.chdir(tmp_path)
    return sandbox


def test_cli_key_and_base_url(
    cli_env: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = ["extract", "--tables", "users", "--out", str(tmp_path / "wh"), "--quiet"]
    assert main(argv) == EXIT_OK
    assert cli_env.requests()  # JICOO_BASE_URL is where the requests went
    monkeypatch.setenv("JICOO_API_KEY", "sk_not_this_one")
    assert main(argv) == EXIT_UNUSABLE  # 403 from the sandbox: the key that was sent
    monkeypatch.setenv("JICOO_BASE_URL", "ftp://127.0.0.1")
    assert main(argv) == EXIT_UNUSABLE


def test_cli_rate_limit_and_burst(cli_env: SandboxServer, tmp_path: Path) -> None:
    # Its own process, as a user runs it: the limiter is per process (first settings win).
    rate = 4.0
    env = {**os.environ, "JICOO_RATE_LIMIT": str(rate), "JICOO_BURST": "1"}
    argv = ["extract", "--tables", "availability_calendars", "--out", str(tmp_path), "--quiet"]
    jicoo = str(Path(sys.executable).with_name("jicoo"))
    done = subprocess.run(  # noqa: S603
        [jicoo, *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == EXIT_OK, done.stderr
    stamps = sorted(float(str(r["at"])) for r in cli_env.requests())
    assert len(stamps) >= 5
    # A bucket of one token refilled at `rate`: the n-th request leaves (n - 1) / rate later.
    assert stamps[-1] - stamps[0] >= (len(stamps) - 1) / rate * 0.9
    env["JICOO_BURST"] = "0"
    refused = subprocess.run(  # noqa: S603
        [jicoo, *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == EXIT_UNUSABLE
    assert refused.stderr == "jicoo: JICOO_BURST='0': '0' is not a whole number of at least 1\n"


def test_cli_network_settings(
    cli_env: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["extract", "--tables", "users", "--out", str(tmp_path / "wh"), "--quiet"]
    # A deadline shorter than the sandbox's latency: each request ends at it.
    monkeypatch.setenv("JICOO_REQUEST_DEADLINE", "0.2")
    cli_env.set_faults({"latency_ms": 1000})
    try:
        assert main(argv) != EXIT_OK
    finally:
        cli_env.clear_faults()
    assert "request deadline (0.2 s)" in capsys.readouterr().err
    monkeypatch.delenv("JICOO_REQUEST_DEADLINE")
    # A proxy that wants other credentials: the request goes there with ours (407 ends it),
    # never to the sandbox, and the password is not printed.
    since = len(cli_env.requests())
    with connect_proxy(("user", "other")) as proxy:
        monkeypatch.setenv("JICOO_PROXY_URL", proxy.url.replace("//", "//user:pw@"))
        assert main(argv) != EXIT_OK
    assert proxy.heads[0].startswith(f"GET {cli_env.base_url}/v1/")
    assert proxy.authorizations[0] == "Basic dXNlcjpwdw=="  # user:pw
    assert len(cli_env.requests()) == since
    assert ":pw@" not in "".join(capsys.readouterr())
    monkeypatch.delenv("JICOO_PROXY_URL")
    monkeypatch.setenv("JICOO_CA_BUNDLE", str(tmp_path / "no-such-ca.pem"))
    assert main(argv) == EXIT_UNUSABLE
    assert "no-such-ca.pem" in capsys.readouterr().err
    # Its TLS effect is tested in tests/client/test_network.py; here: the CLI reads it.
    monkeypatch.setenv("JICOO_TLS_TRUST", "system")
    assert main(argv) == EXIT_UNUSABLE
    assert "not both" in capsys.readouterr().err


@pytest.mark.system_clock("the CLI's default day is the system clock's today in JICOO_TIMEZONE")
def test_cli_timezone_and_warehouse_root(
    cli_env: SandboxServer,
    system_sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("JICOO_API_KEY", system_sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", system_sandbox.base_url)
    # UTC+14: its calendar day is never UTC's, so the partition proves which zone was used.
    zone = ZoneInfo("Pacific/Kiritimati")
    monkeypatch.setenv("JICOO_TIMEZONE", str(zone))
    monkeypatch.setenv("JICOO_WAREHOUSE_ROOT", str(tmp_path / "from_env"))
    days = {dt.datetime.now(zone).date()}
    assert main(["extract", "--tables", "bookings", "--quiet"]) == EXIT_OK
    days.add(dt.datetime.now(zone).date())
    written = {p.parent.name for p in (tmp_path / "from_env" / "bookings").rglob("*.parquet")}
    assert len(written) == 1
    assert written <= {f"day={day}" for day in days}
    # The flag beats the variable.
    assert main(["extract", "--tables", "users", "--out", str(tmp_path / "flag"), "--quiet"]) == 0
    assert (tmp_path / "flag" / "users").is_dir()
    assert not (tmp_path / "from_env" / "users").exists()


def test_cli_ledger_and_apply_log_flag_beats_env_beats_default(
    cli_env: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    changes = tmp_path / "c.csv"
    changes.write_text(CHANGES, encoding="utf-8")
    assert main(["apply", str(changes)]) == EXIT_SOME_FAILED  # a conflict: nothing sent
    assert (tmp_path / "data" / "ledger.sqlite").is_file()  # the default, under the cwd
    assert list((tmp_path / "data" / "apply_log").rglob("*.parquet"))

    monkeypatch.setenv("JICOO_LEDGER_PATH", str(tmp_path / "env" / "ledger.sqlite"))
    monkeypatch.setenv("JICOO_APPLY_LOG_ROOT", str(tmp_path / "env" / "log"))
    (tmp_path / "env").mkdir()
    assert main(["apply", str(changes), "--batch-id", "b-env"]) == EXIT_SOME_FAILED
    assert (tmp_path / "env" / "ledger.sqlite").is_file()
    assert list((tmp_path / "env" / "log").rglob("*.parquet"))
    assert main(["ledger", "status", "b-env"]) == EXIT_OK  # the ledger command reads it too

    flags = ["--ledger", str(tmp_path / "flag.sqlite"), "--apply-log", str(tmp_path / "flag")]
    assert main(["apply", str(changes), "--batch-id", "b-flag", *flags]) == EXIT_SOME_FAILED
    assert (tmp_path / "flag.sqlite").is_file()
    assert list((tmp_path / "flag").rglob("*.parquet"))
    assert main(["ledger", "status", "b-flag"]) == EXIT_UNUSABLE  # not in the env's ledger


def test_cli_ledger_url_beats_the_ledger_path_and_the_flag_beats_both(
    cli_env: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changes = tmp_path / "c.csv"
    changes.write_text(CHANGES, encoding="utf-8")
    flagged = ["--ledger", str(tmp_path / "flag.sqlite"), "--apply-log", str(tmp_path / "log")]
    assert main(["apply", str(changes), "--batch-id", "b", *flagged]) == EXIT_SOME_FAILED
    monkeypatch.setenv("JICOO_LEDGER_PATH", str(tmp_path / "flag.sqlite"))
    assert main(["ledger", "status", "b"]) == EXIT_OK
    capsys.readouterr()
    # Port 9 on loopback: nothing listens, so the CLI says where it tried, without the password.
    monkeypatch.setenv("JICOO_LEDGER_URL", example_value("JICOO_LEDGER_URL"))
    assert main(["ledger", "status", "b"]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "postgresql://ledger:***@127.0.0.1:9/jicoo" in err
    assert "s3cret" not in err
    assert main(["ledger", "status", "b", "--ledger", str(tmp_path / "flag.sqlite")]) == EXIT_OK


def test_cli_webhook_secret_and_db(cli_env: SandboxServer, tmp_path: Path) -> None:
    secret = "whsec_settings_test"
    db = tmp_path / "from_env.sqlite"
    env = {**os.environ, "JICOO_WEBHOOK_SECRET": secret, "JICOO_WEBHOOK_DB": str(db)}
    with _receiver(env) as ready:
        assert f"(events in {db})" in ready, ready
        url = ready.removeprefix(READY_LINE_PREFIX).split()[0]
        body = event_body()
        now = int(dt.datetime.now(dt.UTC).timestamp())
        for key, status in (("whsec_other", 401), (secret, 200)):
            signed = {"Jicoo-Webhook-Signature": sign(key, body, now)}
            response = httpx.post(url, content=body, headers=signed, timeout=10)
            assert response.status_code == status
    assert db.is_file()


@contextlib.contextmanager
def _receiver(env: dict[str, str], *flags: str) -> Iterator[str]:
    """`jicoo webhook serve` in a child process: its ready line."""
    jicoo = str(Path(sys.executable).with_name("jicoo"))
    with subprocess.Popen(  # noqa: S603
        [jicoo, "webhook", "serve", "--port", "0", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as receiver:
        try:
            assert receiver.stdout is not None
            yield receiver.stdout.readline()
        finally:
            receiver.terminate()


def test_cli_webhook_receiver_bounds(cli_env: SandboxServer, tmp_path: Path) -> None:
    """Each JICOO_WEBHOOK_* bound acts in `jicoo webhook serve`; a flag beats its variable."""
    secret = "whsec_bounds"
    env = {**os.environ, **RECEIVER_EXAMPLES, "JICOO_WEBHOOK_SECRET": secret,
           "JICOO_WEBHOOK_DB": str(tmp_path / "events.sqlite")}  # fmt: skip
    with (
        _receiver(env, "--max-body-bytes", "2000") as ready,
        httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client,
    ):
        url = ready.removeprefix(READY_LINE_PREFIX).split()[0]

        def post(body: bytes, **headers: str) -> int:
            signed = {"Jicoo-Webhook-Signature": sign(secret, body, int(time.time())), **headers}
            return client.post(url, content=body, headers=signed).status_code

        padded = event_body()[:-1] + b', "pad": "' + b"p" * 1200 + b'"}'
        assert post(padded) == 200  # over the variable's 1000 bytes, within the flag's 2000
        assert post(padded.replace(b"p" * 1200, b"p" * 2200)) == 413
        assert post(event_body(uid="fields"), **{f"x-{n}": "1" for n in range(21)}) == 431
        assert post(event_body(uid="head"), **{"x-big": "b" * 5000}) in (400, 431)
        parts = urlsplit(url)
        where = (parts.hostname or "", parts.port or 0)
        with socket.create_connection(where) as idle:  # keep-alive: 1 s, head timeout: 3.5 s
            body = event_body(uid="idle")
            idle.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nJicoo-Webhook-Signature: "
                + sign(secret, body, int(time.time())).encode()
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert status_of(until_closed(idle, 1.0 + GRACE_S)[0]) == 200
        with socket.create_connection(where) as silent:
            received, after = until_closed(silent, 3.5 + GRACE_S)
            assert (received, after >= 3.5 * 0.9) == (b"", True)
        with socket.create_connection(where) as slow:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert status_of(until_closed(slow, 1.5 + GRACE_S)[0]) == 408
        held = [socket.create_connection(where) for _ in range(5)]
        try:
            time.sleep(0.2)
            assert post(event_body(uid="past-the-cap")) == 200
            assert until_closed(held[0], GRACE_S)[0] == b""  # the oldest made room
        finally:
            for sock in held:
                sock.close()


def _serve_and_post(env: dict[str, str], *args: str) -> str:
    """``jicoo webhook serve`` with ``env``; one signed event posted; its ready line."""
    with _receiver({**env, "JICOO_WEBHOOK_SECRET": "whsec_settings_test"}, *args) as ready:
        url = ready.removeprefix(READY_LINE_PREFIX).split()[0]
        body = event_body()
        now = int(dt.datetime.now(dt.UTC).timestamp())
        signed = {"Jicoo-Webhook-Signature": sign("whsec_settings_test", body, now)}
        assert httpx.post(url, content=body, headers=signed, timeout=10).status_code == 200
    return ready


def test_cli_webhook_db_url_beats_the_file_and_the_flag_beats_both(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    env = {**os.environ, "JICOO_WEBHOOK_DB": str(tmp_path / "file.sqlite"),
           "JICOO_WEBHOOK_DB_URL": with_password}  # fmt: skip
    ready = _serve_and_post(env)
    shown = postgres_url.replace("postgres@", "postgres:***@", 1)
    assert f"(events in {shown})" in ready  # the password is never shown
    assert not (tmp_path / "file.sqlite").exists()
    with PostgresEventStore(postgres_url, create=False) as store:
        assert len(store.read("", 10).events) == 1
    flagged = tmp_path / "flag.sqlite"
    assert f"(events in {flagged})" in _serve_and_post(env, "--db", str(flagged))
    assert flagged.is_file()
    os.environ["JICOO_WEBHOOK_DB_URL"] = "mysql://hooks:s3cret@db/x"
    try:
        assert main(["webhook", "serve", "--port", "0"]) == EXIT_UNUSABLE
    finally:
        del os.environ["JICOO_WEBHOOK_DB_URL"]
    err = capsys.readouterr().err
    assert "JICOO_WEBHOOK_DB_URL: is not a postgresql:// URL" in err
    assert "s3cret" not in err


def test_cli_load_warehouse_url_and_duckdb_path(
    cli_env: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = str(tmp_path / "wh")
    assert main(["extract", "--tables", "users", "--out", root, "--quiet"]) == EXIT_OK
    load = ["load", "--tables", "users", "--root", root]
    monkeypatch.setenv("JICOO_DUCKDB_PATH", str(tmp_path / "path.duckdb"))
    assert main(load) == EXIT_OK
    assert (tmp_path / "path.duckdb").is_file()
    monkeypatch.setenv("JICOO_WAREHOUSE_URL", str(tmp_path / "url.duckdb"))
    assert main(load) == EXIT_OK  # the URL beats the older JICOO_DUCKDB_PATH
    assert (tmp_path / "url.duckdb").is_file()
    assert main([*load, "--warehouse-url", str(tmp_path / "flag.duckdb")]) == EXIT_OK
    assert (tmp_path / "flag.duckdb").is_file()
