"""This repository's code location (one organization, `JICOO_ORGANIZATION`, built by the
shipped factory) loads and validates as Dagster itself would load it, and shows a data engineer
what each asset and column is."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from jicoo_connector.changes import APPLY_LOG
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import JicooNames

ROOT = Path(__file__).resolve().parents[2]
# The code location's organization when JICOO_ORGANIZATION is not set.
NAMES = JicooNames(ConnectorConfig().organization)


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
        "from assets.definitions import defs; import dagster as dg; "
        "key = dg.AssetKey(['jicoo', 'default', 'apply_log']); "
        "(spec,) = defs().resolve_assets_def(key).specs; print(sorted(spec.kinds))"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "JICOO_ORGANIZATION"},
        "JICOO_API_KEY": "placeholder-key",
        "JICOO_LEDGER_URL": ledger_url,
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", probe],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == str(sorted({"jicoo", "parquet", kind}))


def _location(monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("JICOO_API_KEY", "placeholder-key")
    monkeypatch.delenv("JICOO_ORGANIZATION", raising=False)
    from assets.definitions import defs as load

    loaded = load()
    assert isinstance(loaded, dg.Definitions)
    return loaded


def test_definitions_object_resolves_every_asset_and_job(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = _location(monkeypatch)
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert {
        "jicoo/default/bookings",
        "jicoo/default/booking_contacts",
        "jicoo/default/schedules",
        "jicoo/default/availability_calendars",
        "jicoo/default/available_slots",
        "jicoo/default/event_types",
        "jicoo/default/users",
        "jicoo/default/warehouse",
        "jicoo/default/apply_log",
    } <= keys
    for job in (
        "jicoo_default_daily_tables",
        "jicoo_default_snapshots",
        "jicoo_default_apply_changeset",
        "jicoo_default_webhook_refresh",
    ):
        assert isinstance(defs.resolve_job_def(job), dg.JobDefinition)
    assert {s.name for s in repository.schedule_defs} == {
        "jicoo_default_refresh_schedule",
        "jicoo_default_sweep_schedule",
        "jicoo_default_snapshots_schedule",
    }
    assert {s.name for s in repository.sensor_defs} == {
        "jicoo_default_changeset_inbox_sensor",
        "jicoo_default_booking_events_sensor",
    }
    assert set(defs.resources or {}) == {
        "jicoo_default",
        "jicoo_default_warehouse",
        "jicoo_default_writeback",
    }
    checks = {key.to_user_string() for key in repository.asset_graph.asset_check_keys}
    assert "jicoo/default/apply_log:no_change_in_flight" in checks


def test_columns_and_checks_are_described_from_the_table_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jicoo_connector.extract import TABLES
    from jicoo_connector.quality import check_description

    graph = _location(monkeypatch).get_repository_def().asset_graph
    for table, source in TABLES.items():
        spec = source.spec
        key = NAMES.asset_key(table)
        schema = graph.get(key).metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema)
        assert {c.name: c.description for c in schema.columns} == spec.column_descriptions()
        checks = [k for k in graph.asset_check_keys if k.asset_key == key]
        assert checks, table
        for check in checks:
            description = graph.get_check_spec(check).description
            assert description == check_description(spec, check.name)


def test_every_asset_and_column_is_described_grouped_and_kinded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the UI shows: one group per organization, icons from the kinds, a description on
    every asset and on every column it declares (apply_log's included)."""
    graph = _location(monkeypatch).get_repository_def().asset_graph
    warehouse_kinds = {"duckdb", "postgres", "snowflake", "bigquery"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert key.path[:2] == ["jicoo", NAMES.organization], key
        assert node.group_name == NAMES.group
        assert "jicoo" in node.kinds
        if key == NAMES.asset_key("warehouse"):
            (backend,) = node.kinds - {"jicoo"}
            assert backend in warehouse_kinds
        else:
            assert "parquet" in node.kinds, key
        assert (node.description or "").strip(), key
        schema = node.metadata.get("dagster/column_schema")
        if key != NAMES.asset_key("warehouse"):
            assert isinstance(schema, dg.TableSchema), key
            assert all((c.description or "").strip() for c in schema.columns), key
    apply_log = graph.get(NAMES.asset_key("apply_log")).metadata["dagster/column_schema"]
    assert isinstance(apply_log, dg.TableSchema)
    assert [c.name for c in apply_log.columns] == APPLY_LOG.schema.names
    assert {c.name: c.description for c in apply_log.columns} == APPLY_LOG.column_descriptions()
