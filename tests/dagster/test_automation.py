"""Schedules, the inbox sensor and the 403 path, evaluated and run through Dagster."""

import datetime as dt
import logging
from pathlib import Path

import dagster as dg

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import build_jicoo_definitions
from jicoo_connector.extract import TABLES
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    api_key,
    definitions,
    materializations,
    materialize,
    range_tags,
    store_of,
)
from tests.support.sandbox import LIMITED_KEY, TOKYO, tokyo_today

INBOX_SENSOR = NAMES.sensor("changeset_inbox")
APPLY_LOG_OP = NAMES.op("apply_log")
CHANGESET = "action,booking_uid,new_started_at,time_zone,cancel_reason\ncancel,{uid},,,gone\n"


def _inbox_defs(inbox: Path) -> dg.Definitions:
    """Definitions whose inbox is ``inbox`` (nothing here calls the API)."""
    return build_jicoo_definitions(
        NAMES.organization,
        api_key=api_key("sk_unused"),
        data_root=str(inbox.parent / "data"),
        changeset_inbox=str(inbox),
    )


def _sensor_requests(inbox: Path) -> list[dg.RunRequest]:
    defs = _inbox_defs(inbox)
    with dg.build_sensor_context(resources=defs.resources) as context:
        result = defs.resolve_sensor_def(INBOX_SENSOR).evaluate_tick(context)
    assert not result.skip_message, result.skip_message
    return list(result.run_requests or [])


def test_inbox_sensor_requests_one_run_per_content(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CHANGESET.format(uid="b1"), encoding="utf-8")
    (tmp_path / "b.csv").write_text(CHANGESET.format(uid="b2"), encoding="utf-8")
    # What the asset writes next to a change set is not a new change set.
    (tmp_path / "a.rejected.csv").write_text("row,column,reason\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")

    first = _sensor_requests(tmp_path)
    assert [r.run_key.split(":")[0] for r in first if r.run_key] == ["a.csv", "b.csv"]
    assert [r.run_key for r in _sensor_requests(tmp_path)] == [r.run_key for r in first]

    job = _inbox_defs(tmp_path).resolve_job_def(NAMES.job("apply_changeset"))
    for request in first:
        config = request.run_config["ops"][APPLY_LOG_OP]["config"]
        assert Path(config["path"]).is_absolute()
        assert Path(config["path"]).parent == tmp_path.resolve()
        assert dg.validate_run_config(job, request.run_config)

    (tmp_path / "a.csv").write_text(CHANGESET.format(uid="b3"), encoding="utf-8")
    edited = _sensor_requests(tmp_path)
    assert edited[0].run_key != first[0].run_key
    assert edited[1].run_key == first[1].run_key
    batch_ids = {r.run_config["ops"][APPLY_LOG_OP]["config"]["batch_id"] for r in edited + first}
    assert len(batch_ids) == 3


def test_refresh_schedule_requests_the_rolling_range_and_the_run_extracts_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Evaluated at the sandbox's day; Dagster's partitions follow the test clock (conftest).
    config = ConnectorConfig()
    defs = definitions(sandbox, tmp_path)
    refresh_schedule = defs.resolve_schedule_def(NAMES.schedule("refresh"))
    moment = dt.datetime.combine(tokyo_today(sandbox), dt.time(3, 30), tzinfo=TOKYO)
    context = dg.build_schedule_context(scheduled_execution_time=moment)
    (request,) = list(refresh_schedule.evaluate_tick(context).run_requests or [])
    start = moment.date() - dt.timedelta(days=config.refresh_past_days)
    end = moment.date() + dt.timedelta(days=config.refresh_future_days)
    assert request.tags == {
        **range_tags(start, end),
        "dagster/schedule_name": NAMES.schedule("refresh"),
    }
    assert refresh_schedule.job_name == NAMES.job("daily_tables")

    job = defs.resolve_job_def(refresh_schedule.job_name)
    # The schedule's own tags, on a narrowed range to keep the run short.
    narrow = {**request.tags, **range_tags(moment.date(), moment.date() + dt.timedelta(days=1))}
    result = job.execute_in_process(tags=narrow)
    assert result.success
    for table in ("bookings", "booking_contacts"):
        events = materializations(result, NAMES.asset_key(table))
        assert sorted(str(e.partition) for e in events) == [
            str(moment.date()),
            str(moment.date() + dt.timedelta(days=1)),
        ]
    assert store_of(defs).list_partitions(TABLES["bookings"].spec) == [
        moment.date(),
        moment.date() + dt.timedelta(days=1),
    ]


def test_a_403_skips_the_asset_with_a_warning_and_keeps_the_run_green(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = definitions(sandbox, tmp_path, key=LIMITED_KEY)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(defs, ["event_types", "users"], instance=instance)
        warnings = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.level == logging.WARNING
        ]
    assert result.success
    assert materializations(result, NAMES.asset_key("event_types")) == []
    assert len(materializations(result, NAMES.asset_key("users"))) == 1
    assert {e.asset_key for e in result.get_asset_check_evaluations()} == {NAMES.asset_key("users")}
    assert any("jicoo/test/event_types skipped: 403" in message for message in warnings), warnings
