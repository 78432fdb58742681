"""Every documented setting is honoured: the README's table and ConnectorConfig match both ways,
and each variable changes what the CLI and the Dagster code location do.

The code location is loaded the way Dagster loads it (``assets.definitions:defs`` with the
variable set) and its resources, partitions and schedules are inspected (found by kind, as their
names carry the organization); the CLI is run
against the sandbox and its files and requests are looked at.
"""

import contextlib
import dataclasses
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest

from jicoo_connector.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, build_parser, main
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import JicooResource, WarehouseResource, WriteBackResource
from jicoo_connector.webhooks import READY_LINE_PREFIX, PostgresEventStore
from jicoo_sandbox.server import SandboxServer
from jicoo_sandbox.webhooks import sign
from tests.support.proxy import connect_proxy
from tests.support.webhook_receiver import event_body
from tests.webhooks.test_bounds import GRACE_S, _status, _until_closed

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = {spec.env: name for name, spec in ConnectorConfig.specs().items()}
# A fixed tick: schedules are evaluated at it, so no result depends on today.
TICK = dt.datetime(2026, 6, 15, 3, 30, tzinfo=ZoneInfo("Asia/Tokyo"))


def readme_settings() -> dict[str, str]:
    """Variable -> its default as the README's settings table spells it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`(JICOO_[A-Z_]+)`", cells[0]) if len(cells) == 3 else []
        defaults = re.findall(r"`([^`]+)`", cells[1]) if names else []
        for index, name in enumerate(names):
            out[name] = defaults[index] if index < len(defaults) else cells[1]
    return out


def _spelled(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return "(none)" if value is None else str(value)


def test_the_readme_table_and_the_config_object_match_both_ways() -> None:
    documented = readme_settings()
    assert set(documented) - set(VARIABLES) == set(), "documented but not read"
    assert set(VARIABLES) - set(documented) == set(), "read but not in the README"
    defaults = ConnectorConfig()
    for env, name in VARIABLES.items():
        expected = "(required)" if env == "JICOO_API_KEY" else _spelled(getattr(defaults, name))
        assert documented[env] == expected, env


def test_every_variable_is_read_when_called_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {env: _example(env) for env in VARIABLES}
    for env, raw in values.items():
        monkeypatch.setenv(env, raw)
    config = ConnectorConfig.from_env()
    shown = config.to_env()
    for env, name in VARIABLES.items():
        if ConnectorConfig.specs()[name].secret:  # never spelled out, read all the same
            assert env not in shown
            value = getattr(config, name)
            assert (value.reveal() if env == "JICOO_API_KEY" else value) == values[env]
        else:
            assert shown[env] == values[env]


def _example(env: str) -> str:
    """A valid value different from the default."""
    return {
        "JICOO_API_KEY": "sk_settings_test",
        "JICOO_BASE_URL": "http://127.0.0.1:9",
        "JICOO_RATE_LIMIT": "3.5",
        "JICOO_BURST": "3",
        "JICOO_TIMEZONE": "Europe/Paris",
        "JICOO_PARTITION_START": "2026-01-05",
        "JICOO_FUTURE_DAYS": "9",
        "JICOO_REFRESH_PAST_DAYS": "2",
        "JICOO_REFRESH_FUTURE_DAYS": "4",
        "JICOO_SWEEP_PAST_DAYS": "33",
        "JICOO_LEDGER_URL": "postgresql://ledger:s3cret@127.0.0.1:9/jicoo",
        "JICOO_WEBHOOK_DB_URL": "postgresql://hooks:s3cret@127.0.0.1:9/jicoo",
        "JICOO_WEBHOOK_INTERVAL_S": "7",
        "JICOO_REQUEST_DEADLINE": "7.5",
        "JICOO_PROXY_URL": "http://proxyuser:pw@127.0.0.1:9",
        "JICOO_TLS_TRUST": "system",
        **RECEIVER_EXAMPLES,
        "JICOO_ORGANIZATION": "acme",
    }.get(env, f"/srv/jicoo/{env.lower()}")


# The receiver's bounds, small enough for the CLI test below to see each one act.
RECEIVER_EXAMPLES = {
    "JICOO_WEBHOOK_MAX_CONNECTIONS": "5",
    "JICOO_WEBHOOK_MAX_HEADER_BYTES": "4096",
    "JICOO_WEBHOOK_MAX_HEADERS": "20",
    "JICOO_WEBHOOK_HEADER_TIMEOUT_S": "3.5",
    "JICOO_WEBHOOK_BODY_TIMEOUT_S": "1.5",
    "JICOO_WEBHOOK_KEEP_ALIVE_S": "1",
    "JICOO_WEBHOOK_MAX_BODY_BYTES": "1000",
}


# -- the code location --------------------------------------------------------------------


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dg.Definitions:
    monkeypatch.setenv("JICOO_API_KEY", "sk_some_other_key")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from assets.definitions import defs

    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    return loaded


R = TypeVar("R", JicooResource, WarehouseResource, WriteBackResource)


def _one(d: dg.Definitions, kind: type[R]) -> R:
    """The location's one resource of ``kind``, as a run gets it (EnvVars read)."""
    (resource,) = [r for r in (d.resources or {}).values() if isinstance(r, kind)]
    initialized = resource.process_config_and_initialize()
    assert isinstance(initialized, kind)
    return initialized


def _ending(names: Iterable[str], suffix: str) -> str:
    (name,) = [n for n in names if n.endswith(suffix)]
    return name


def _schedule(d: dg.Definitions, kind: str) -> dg.ScheduleDefinition:
    names = [s.name for s in d.get_repository_def().schedule_defs]
    return d.resolve_schedule_def(_ending(names, f"_{kind}_schedule"))


def _sensor(d: dg.Definitions, kind: str) -> dg.SensorDefinition:
    names = [s.name for s in d.get_repository_def().sensor_defs]
    return d.resolve_sensor_def(_ending(names, f"_{kind}_sensor"))


def _partitions(defs: dg.Definitions) -> dg.DailyPartitionsDefinition:
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    (bookings,) = [key for key in keys if key.path[-1] == "bookings"]
    partitions = defs.resolve_assets_def(bookings).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    return partitions


def _range(defs: dg.Definitions, schedule: str) -> tuple[str, str]:
    context = dg.build_schedule_context(scheduled_execution_time=TICK)
    (request,) = _schedule(defs, schedule).evaluate_tick(context).run_requests or []
    tags = request.tags
    return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]


def _organizations(d: dg.Definitions) -> list[str]:
    """The organizations the asset keys (jicoo/<organization>/<table>) name."""
    return sorted({key.path[1] for key in d.resolve_asset_graph().get_all_asset_keys()})


def _events_store(d: dg.Definitions) -> str | None:
    """The event store the webhook sensor reads: the file it says does not exist here, or the
    PostgreSQL server it names (redacted) when it cannot reach it."""
    try:
        with dg.build_sensor_context(resources=d.resources) as context:
            message = _sensor(d, "booking_events").evaluate_tick(context).skip_message or ""
    except Exception as exc:  # noqa: BLE001 - the error is what names the server
        message = str(exc)
        assert "s3cret" not in message
        found = re.search(r"webhook store (\S+):", message)
        return found[1] if found else message
    found = re.search(r"\((.+) does not exist\)", message)
    return found[1] if found else None


LOCATION: dict[str, Callable[[dg.Definitions], object]] = {
    "JICOO_ORGANIZATION": _organizations,
    "JICOO_API_KEY": lambda d: _one(d, JicooResource).api_key,
    "JICOO_BASE_URL": lambda d: _one(d, JicooResource).base_url,
    "JICOO_RATE_LIMIT": lambda d: str(_one(d, JicooResource).rate_limit),
    "JICOO_BURST": lambda d: str(_one(d, JicooResource).burst),
    "JICOO_REQUEST_DEADLINE": lambda d: str(_one(d, JicooResource).settings().request_deadline),
    "JICOO_PROXY_URL": lambda d: _one(d, JicooResource).settings().proxy_url,
    "JICOO_CA_BUNDLE": lambda d: _one(d, JicooResource).settings().ca_bundle,
    "JICOO_TLS_TRUST": lambda d: _one(d, JicooResource).settings().tls_trust,
    "JICOO_TIMEZONE": lambda d: (
        _partitions(d).timezone,
        _schedule(d, "refresh").execution_timezone,
    ),
    "JICOO_PARTITION_START": lambda d: _partitions(d).start.date().isoformat(),
    "JICOO_FUTURE_DAYS": lambda d: (_partitions(d).end_offset, _range(d, "sweep")),
    "JICOO_REFRESH_PAST_DAYS": lambda d: _range(d, "refresh"),
    "JICOO_REFRESH_FUTURE_DAYS": lambda d: _range(d, "refresh"),
    "JICOO_SWEEP_PAST_DAYS": lambda d: _range(d, "sweep"),
    "JICOO_WAREHOUSE_ROOT": lambda d: _one(d, WarehouseResource).root,
    "JICOO_DUCKDB_PATH": lambda d: _one(d, WarehouseResource).duckdb_path,
    "JICOO_WAREHOUSE_URL": lambda d: _one(d, WarehouseResource).warehouse().describe(),
    "JICOO_WAREHOUSE_PASSWORD": lambda d: _one(d, WarehouseResource).warehouse().password,
    "JICOO_LEDGER_PATH": lambda d: _one(d, WriteBackResource).ledger_path,
    "JICOO_APPLY_LOG_ROOT": lambda d: _one(d, WriteBackResource).apply_log_root,
    "JICOO_LEDGER_URL": lambda d: _one(d, WriteBackResource).ledger_location(),
    "JICOO_CHANGESET_INBOX": lambda d: _one(d, WriteBackResource).inbox,
    "JICOO_WEBHOOK_DB": _events_store,
    "JICOO_WEBHOOK_DB_URL": _events_store,
    "JICOO_WEBHOOK_INTERVAL_S": lambda d: str(
        _sensor(d, "booking_events").minimum_interval_seconds
    ),
}
# Read by the webhook receiver only (`jicoo webhook serve`, tested below); Dagster never needs them.
NOT_IN_LOCATION = {"JICOO_WEBHOOK_SECRET", *RECEIVER_EXAMPLES}
EXPECTED_IN_LOCATION: dict[str, object] = {
    "JICOO_ORGANIZATION": ["acme"],
    "JICOO_RATE_LIMIT": "3.5",
    "JICOO_BURST": "3",
    "JICOO_TIMEZONE": ("Europe/Paris", "Europe/Paris"),
    "JICOO_FUTURE_DAYS": (9, ("2026-03-17", "2026-06-24")),  # the sweep: 90 back, 9 ahead
    "JICOO_REFRESH_PAST_DAYS": ("2026-06-13", "2026-06-29"),
    "JICOO_REFRESH_FUTURE_DAYS": ("2026-06-08", "2026-06-19"),
    "JICOO_SWEEP_PAST_DAYS": ("2026-05-13", "2026-07-15"),
    "JICOO_WEBHOOK_DB_URL": "postgresql://hooks:***@127.0.0.1:9/jicoo",  # the password never shows
}


# What a variable needs beside it to show its effect: a password only counts for a URL with none.
ALONGSIDE = {"JICOO_WAREHOUSE_PASSWORD": {"JICOO_WAREHOUSE_URL": "postgresql://loader@db/dwh"}}


def test_every_variable_has_a_code_location_check() -> None:
    assert set(LOCATION) | NOT_IN_LOCATION == set(VARIABLES)
    assert not set(LOCATION) & NOT_IN_LOCATION


@pytest.mark.parametrize("env", sorted(LOCATION))
def test_each_variable_changes_the_code_location(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for other in VARIABLES:
        monkeypatch.delenv(other, raising=False)
    # The defaults are relative (data/...): checked as values, resolved under the test's folder,
    # never opened in the checkout's data/ (a user's events file may sit there).
    monkeypatch.chdir(tmp_path)
    value = _example(env)
    before = LOCATION[env](_load(monkeypatch, **ALONGSIDE.get(env, {})))
    after = LOCATION[env](_load(monkeypatch, **ALONGSIDE.get(env, {}), **{env: value}))
    assert after != before
    assert after == EXPECTED_IN_LOCATION.get(env, value)


def test_a_bad_value_stops_the_code_location_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Exception, match=r"^JICOO_FUTURE_DAYS='-1': '-1' is not a whole"):
        _load(monkeypatch, JICOO_FUTURE_DAYS="-1")


# -- the CLI ------------------------------------------------------------------------------

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
    # Passed to the warehouse by the CLI and by the code location (the test above;
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
    monkeypatch.setenv("JICOO_LEDGER_URL", _example("JICOO_LEDGER_URL"))
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
            assert _status(_until_closed(idle, 1.0 + GRACE_S)[0]) == 200
        with socket.create_connection(where) as silent:
            received, after = _until_closed(silent, 3.5 + GRACE_S)
            assert (received, after >= 3.5 * 0.9) == (b"", True)
        with socket.create_connection(where) as slow:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert _status(_until_closed(slow, 1.5 + GRACE_S)[0]) == 408
        held = [socket.create_connection(where) for _ in range(5)]
        try:
            time.sleep(0.2)
            assert post(event_body(uid="past-the-cap")) == 200
            assert _until_closed(held[0], GRACE_S)[0] == b""  # the oldest made room
        finally:
            for sock in held:
                sock.close()


def _serve_and_post(env: dict[str, str], *args: str) -> str:
    """``jicoo webhook serve`` with ``env``; one signed event posted; its ready line."""
    jicoo = str(Path(sys.executable).with_name("jicoo"))
    with subprocess.Popen(  # noqa: S603
        [jicoo, "webhook", "serve", "--port", "0", *args],
        env={**env, "JICOO_WEBHOOK_SECRET": "whsec_settings_test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as receiver:
        try:
            assert receiver.stdout is not None
            ready = receiver.stdout.readline()
            url = ready.removeprefix(READY_LINE_PREFIX).split()[0]
            body = event_body()
            now = int(dt.datetime.now(dt.UTC).timestamp())
            signed = {"Jicoo-Webhook-Signature": sign("whsec_settings_test", body, now)}
            assert httpx.post(url, content=body, headers=signed, timeout=10).status_code == 200
        finally:
            receiver.terminate()
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


def test_every_field_has_its_variable_documented_in_help_or_readme() -> None:
    # The one-line rule for a new setting: a field here, a row in the README.
    assert [f.name for f in dataclasses.fields(ConnectorConfig)] == list(VARIABLES.values())


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
