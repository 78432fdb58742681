"""apply_changeset through Dagster: dry run observes, apply POSTs once per change, re-run none."""

import csv
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from jicoo_connector.changes import is_postgres_url
from jicoo_connector.client import JicooClient
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.redaction import redact_location
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    check_evaluations,
    definitions,
    materializations,
)
from tests.support.sandbox import sandbox_settings
from tests.support.writeback_data import booking, future_open_bookings

APPLY_LOG_KEY = NAMES.asset_key("apply_log")
APPLY_LOG_OP = NAMES.op("apply_log")
APPLY_JOB = NAMES.job("apply_changeset")
INBOX_SENSOR = NAMES.sensor("changeset_inbox")
LEDGER_URL_ENV = ConnectorConfig.specs()["ledger_url"].env
CANCELS = 3
ALL_CHECKS_PASSED = {
    "jicoo/test/apply_log/no_change_in_flight": True,
    "jicoo/test/apply_log/every_row_went_through": True,
}
FIELDS = ["action", "booking_uid", "new_started_at", "time_zone", "cancel_reason"]


def _changeset(sandbox: SandboxServer, path: Path) -> dict[str, str]:
    """Cancels of future open bookings plus one reschedule to a free slot: booking uid -> action."""
    now = sandbox.config.clock()
    with JicooClient(sandbox_settings(sandbox)) as client:
        upcoming = client.list_bookings(
            started_at=now + dt.timedelta(days=2), ended_at=now + dt.timedelta(days=9)
        )
        open_bookings = [b for b in upcoming.records if b.get("status") == "open"]
        moved = open_bookings[0]
        slots = client.list_available_slots(
            str(moved["eventTypeId"]), now + dt.timedelta(days=10), now + dt.timedelta(days=13)
        )
    rows = [
        {
            "action": "reschedule",
            "booking_uid": str(moved["uid"]),
            "new_started_at": str(slots[0]["startedAt"]),
            "time_zone": "Asia/Tokyo",
            "cancel_reason": "",
        },
        *(
            {
                "action": "cancel",
                "booking_uid": str(b["uid"]),
                "new_started_at": "",
                "time_zone": "",
                "cancel_reason": "room closed",
            }
            for b in open_bookings[1 : 1 + CANCELS]
        ),
    ]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return {row["booking_uid"]: row["action"] for row in rows}


def _posts(sandbox: SandboxServer, since: int = 0) -> list[dict[str, object]]:
    return [e for e in sandbox.store.journal(since) if e["method"] == "POST"]


def _writeback_job(sandbox: SandboxServer, tmp_path: Path) -> dg.JobDefinition:
    return definitions(sandbox, tmp_path).resolve_job_def(APPLY_JOB)


def _definitions_at(
    sandbox: SandboxServer, ledger_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dg.Definitions, str]:
    """The test organization with its ledger at ``ledger_location``, and the location it uses:
    a PostgreSQL URL gets a password and goes only through EnvVar (it may hold a password), as
    a user passes it."""
    if not is_postgres_url(ledger_location):
        return definitions(sandbox, tmp_path, ledger_path=ledger_location), ledger_location
    used = ledger_location.replace("postgres@", "postgres:s3cret@")
    monkeypatch.setenv(LEDGER_URL_ENV, used)
    return definitions(sandbox, tmp_path, ledger_url=dg.EnvVar(LEDGER_URL_ENV)), used


@pytest.mark.system_clock(
    "the write-back job refuses reschedule targets in the past by the system clock"
)
def test_dry_run_then_apply_then_rerun_through_the_job(
    system_sandbox: SandboxServer,
    tmp_path: Path,
    ledger_location: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = system_sandbox
    path = tmp_path / "changes.csv"
    changes = _changeset(sandbox, path)
    postgres = is_postgres_url(ledger_location)
    defs, used = _definitions_at(sandbox, ledger_location, tmp_path, monkeypatch)
    # The way scripts/demo.py launches it: the Definitions' job, run_config keyed by the op.
    job = defs.resolve_job_def(APPLY_JOB)
    (spec,) = defs.resolve_assets_def(APPLY_LOG_KEY).specs
    assert spec.kinds == {"jicoo", "parquet", "postgres" if postgres else "sqlite"}

    def run(dry_run: bool) -> dg.ExecuteInProcessResult:
        config = {"path": str(path), "dry_run": dry_run, "concurrency": 4}
        return job.execute_in_process(run_config={"ops": {APPLY_LOG_OP: {"config": config}}})

    dry = run(dry_run=True)
    assert dry.success
    assert _posts(sandbox) == []
    assert materializations(dry, APPLY_LOG_KEY) == []
    assert check_evaluations(dry) == {}
    (observation,) = dry.get_asset_observation_events()
    metadata = observation.asset_observation_data.asset_observation.metadata
    assert metadata["jicoo/plan/will_apply"] == dg.IntMetadataValue(len(changes))
    assert metadata["jicoo/dry_run"] == dg.BoolMetadataValue(True)

    applied = run(dry_run=False)
    assert applied.success
    posts = _posts(sandbox)
    assert all(p["changed"] and p["status"] == 200 for p in posts)
    assert sorted(str(p["booking_uid"]) for p in posts) == sorted(changes)
    assert {str(p["booking_uid"]): str(p["path"]).rsplit("/", 1)[-1] for p in posts} == changes
    assert check_evaluations(applied) == ALL_CHECKS_PASSED
    (event,) = materializations(applied, APPLY_LOG_KEY)
    assert event.metadata["dagster/row_count"] == dg.IntMetadataValue(len(changes))
    assert event.metadata["jicoo/posts_sent"] == dg.IntMetadataValue(len(changes))
    assert event.metadata["jicoo/state/applied"] == dg.IntMetadataValue(len(changes))
    assert Path(str(event.metadata["dagster/uri"].value)).is_file()
    # An asset job has no "result" output to read: callers read the materialization instead.
    with pytest.raises(dg.DagsterInvariantViolationError, match="no output named result"):
        applied.output_for_node(APPLY_LOG_OP)
    assert f"POSTs sent: {len(changes)}" in str(event.metadata["jicoo/summary"].value)
    assert event.metadata["jicoo/ledger"] == dg.TextMetadataValue(redact_location(used))
    assert event.metadata["jicoo/ledger_backend"] == dg.TextMetadataValue(
        "postgresql" if postgres else "sqlite"
    )
    assert "s3cret" not in repr(event.metadata)

    seen = len(sandbox.store.journal())
    again = run(dry_run=False)
    assert again.success
    assert _posts(sandbox, since=seen) == []
    (event,) = materializations(again, APPLY_LOG_KEY)
    assert event.metadata["jicoo/posts_sent"] == dg.IntMetadataValue(0)
    assert check_evaluations(again) == ALL_CHECKS_PASSED


def test_the_inbox_sensor_runs_by_default_and_says_so(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sensor = definitions(sandbox, tmp_path).resolve_sensor_def(INBOX_SENSOR)
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    description = sensor.description or ""
    assert "Running by default" in description
    assert "<name>.cp932.csv" in description


def test_a_cp932_file_in_the_inbox_is_applied_by_its_name(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Cancels only: the job compares no time with its (system) clock; the sandbox refuses a
    # cancel of a booking in its own past.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    uid = str(future_open_bookings(sandbox)[0]["uid"])
    reason = "会議室が使えなくなりました"
    (inbox / "orders.cp932.csv").write_bytes(
        f"{','.join(FIELDS)}\ncancel,{uid},,,{reason}\n".encode("cp932")
    )
    (inbox / "notes.v2.csv").write_text(f"{','.join(FIELDS)}\n", encoding="utf-8")
    defs = definitions(sandbox, tmp_path, changeset_inbox=str(inbox))
    with dg.build_sensor_context(resources=defs.resources) as context:
        tick = defs.resolve_sensor_def(INBOX_SENSOR).evaluate_tick(context)
    requests = {
        Path(r.run_config["ops"][APPLY_LOG_OP]["config"]["path"]).name: r
        for r in tick.run_requests or []
    }
    config = requests["orders.cp932.csv"].run_config["ops"][APPLY_LOG_OP]["config"]
    assert config["encoding"] == "cp932"
    assert requests["notes.v2.csv"].run_config["ops"][APPLY_LOG_OP]["config"]["encoding"] is None
    result = defs.resolve_job_def(APPLY_JOB).execute_in_process(
        run_config=requests["orders.cp932.csv"].run_config
    )
    assert result.success
    (post,) = _posts(sandbox)
    assert post["booking_uid"] == uid
    assert post["changed"]
    assert booking(sandbox, uid)["cancelReason"] == reason


@pytest.mark.system_clock(
    "the write-back job refuses reschedule targets in the past by the system clock"
)
def test_the_job_writes_every_row_that_did_not_go_through_to_rejected_csv(
    system_sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox = system_sandbox
    path = tmp_path / "changes.csv"
    changes = _changeset(sandbox, path)
    with path.open("a", encoding="utf-8", newline="") as out:
        out.write("cancel,nosuchbooking1,,,gone\ncancel,,,,no uid\n")
    config = {"path": str(path), "dry_run": False, "concurrency": 4}
    result = _writeback_job(sandbox, tmp_path).execute_in_process(
        run_config={"ops": {APPLY_LOG_OP: {"config": config}}}
    )
    assert result.success
    text = (tmp_path / "changes.rejected.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines()))
    last = len(changes) + 2
    assert [(r["error_row"], r["error_reason"]) for r in rows] == [
        (str(last), "conflict: booking not found"),
        (str(last + 1), "booking_uid is required"),
    ]
