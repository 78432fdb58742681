"""The same signals through Dagster: a key that reads nothing fails the run's steps with one
line naming JICOO_API_KEY (never retried); a table the key may not read is skipped, and the
asset says so in its metadata."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    definitions,
    materializations,
    materialize,
    observations,
    range_tags,
    warehouse_of,
)
from tests.support.sandbox import LIMITED_KEY, tokyo_today

WRONG_KEY = "sk_live_not_this_one"


def _failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> what the step failure says (a dg.Failure's description)."""
    failed: dict[str, str] = {}
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        failed[str(event.step_key)] = (
            user.description if user and user.description else data.error.message  # type: ignore[union-attr]
        )
    return failed


@pytest.mark.parametrize("job_name", ["daily_tables", "snapshots"])
def test_a_key_that_reads_nothing_fails_the_job_with_one_line(
    job_name: str, sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = definitions(sandbox, tmp_path, key=WRONG_KEY)
    job = defs.resolve_job_def(NAMES.job(job_name))
    day = tokyo_today(sandbox)
    tags = range_tags(day, day) if job_name == "daily_tables" else {}
    sandbox.clear_requests()
    result = job.execute_in_process(tags=tags, raise_on_error=False)

    assert not result.success
    failed = _failures(result)
    assert failed  # the first step of each job (bookings; every snapshot table)
    for step, message in failed.items():
        assert "\n" not in message, step
        assert message.startswith("the API refused the key (GET /v1/"), message
        assert "check the API key (JICOO_API_KEY); 0 of 1 partitions written" in message
        assert WRONG_KEY not in message
    assert not list(Path(warehouse_of(defs).root).rglob("*.parquet"))
    # Never retried: every request was refused, and none went out more often than once per
    # failed step (each step's key check is the same request; a retry would repeat its own).
    asked = Counter((r["method"], r["path"], str(r["query"])) for r in sandbox.requests())
    assert {r["status"] for r in sandbox.requests()} == {403}
    assert asked
    assert max(asked.values()) <= len(failed), asked


def test_a_table_the_key_may_not_read_is_skipped_and_says_so_in_its_metadata(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    tables = ["event_types", "users"]
    first = materialize(definitions(sandbox, tmp_path), tables)
    assert first.success
    root = warehouse_of(definitions(sandbox, tmp_path)).root
    (earlier,) = list(Path(root, "event_types").rglob("data.parquet"))
    kept = earlier.read_bytes()

    result = materialize(definitions(sandbox, tmp_path, key=LIMITED_KEY), tables)

    assert result.success  # the key reads the rest: skipping one table is not a failure
    event_types = NAMES.asset_key("event_types")
    assert materializations(result, event_types) == []
    (observed,) = observations(result, event_types)
    skipped = observed.metadata["jicoo/skipped"].value
    assert isinstance(skipped, str)
    assert skipped.startswith("403 on /v1/event_types")
    assert skipped.endswith("earlier partitions kept")
    assert earlier.read_bytes() == kept
    assert len(materializations(result, NAMES.asset_key("users"))) == 1
