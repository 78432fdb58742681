"""The code location loads and validates as Dagster itself would load it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dg_check_defs(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(  # noqa: S603
        [str(Path(sys.executable).with_name("dg")), "check", "defs"],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_definitions_validate_with_dagsters_own_command(tmp_path: Path) -> None:
    result = _dg_check_defs(tmp_path, JICOO_API_KEY="placeholder-key")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All definitions loaded successfully" in output
    assert "Warning" not in output, output


def test_a_bad_setting_fails_the_load_with_one_line_naming_it(tmp_path: Path) -> None:
    result = _dg_check_defs(tmp_path, JICOO_API_KEY="placeholder-key", JICOO_TIMEZONE="Tokyo")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    expected = "ConfigError: JICOO_TIMEZONE='Tokyo': 'Tokyo' is not an IANA time zone"
    assert expected in output
    assert "ZoneInfoNotFoundError" not in output
    # Only the frame that reports it, not the parser's stack.
    assert output.count('File "') <= 1, output


@pytest.mark.parametrize(
    ("ledger_url", "kind"),
    [("", "sqlite"), ("postgresql://jicoo:s3cret@db.internal:5432/ops", "postgres")],
)
def test_apply_log_names_the_configured_ledgers_backend(ledger_url: str, kind: str) -> None:
    # A fresh process: the code location reads the environment when it loads.
    probe = (
        "from assets.definitions import defs; from assets.writeback import APPLY_LOG_KEY; "
        "(spec,) = defs().resolve_assets_def(APPLY_LOG_KEY).specs; print(sorted(spec.kinds))"
    )
    env = {**os.environ, "JICOO_API_KEY": "placeholder-key", "JICOO_LEDGER_URL": ledger_url}
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", probe],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == str(sorted({"jicoo", "parquet", kind}))


def test_definitions_object_resolves_every_asset_and_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JICOO_API_KEY", "placeholder-key")
    from assets.definitions import defs as load

    defs = load()

    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert {
        "jicoo/bookings",
        "jicoo/booking_contacts",
        "jicoo/schedules",
        "jicoo/availability_calendars",
        "jicoo/available_slots",
        "jicoo/event_types",
        "jicoo/users",
        "jicoo/warehouse",
        "jicoo/apply_log",
    } <= keys
    for job in ("jicoo_daily_tables", "jicoo_snapshots", "apply_changeset"):
        assert isinstance(defs.resolve_job_def(job), dg.JobDefinition)
    assert {s.name for s in repository.schedule_defs} == {
        "jicoo_refresh_schedule",
        "jicoo_sweep_schedule",
        "jicoo_snapshots_schedule",
    }
    assert {s.name for s in repository.sensor_defs} == {
        "changeset_inbox_sensor",
        "booking_events_sensor",
    }
    checks = {key.to_user_string() for key in repository.asset_graph.asset_check_keys}
    assert "jicoo/apply_log:no_change_in_flight" in checks


def test_columns_and_checks_are_described_from_the_table_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JICOO_API_KEY", "placeholder-key")
    from assets.definitions import defs
    from jicoo_connector.extract import TABLES
    from jicoo_connector.quality import check_description

    graph = defs().get_repository_def().asset_graph
    for table, source in TABLES.items():
        spec = source.spec
        key = dg.AssetKey(["jicoo", table])
        schema = graph.get(key).metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema)
        assert {c.name: c.description for c in schema.columns} == spec.column_descriptions()
        checks = [k for k in graph.asset_check_keys if k.asset_key == key]
        assert checks, table
        for check in checks:
            description = graph.get_check_spec(check).description
            assert description == check_description(spec, check.name)
