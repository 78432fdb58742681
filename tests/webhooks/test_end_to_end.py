"""End to end, every piece its own process: a reschedule made through the sandbox API reaches
the bookings Parquet of both days through the receiver, the sensor and the Dagster daemon."""

import datetime as dt
import time
from pathlib import Path

import pytest

from benchmarks.webhook_freshness import (
    TOKYO,
    WebhookStack,
    find_moves,
    reschedule,
    row_started_at,
)

# A short sensor interval keeps the test short; the benchmark measures the default.
INTERVAL_S = 2
TIMEOUT_S = 150.0
POLL_S = 0.5


@pytest.mark.slow
def test_a_reschedule_reaches_the_parquet_of_both_days(tmp_path: Path) -> None:
    with WebhookStack(tmp_path, interval_s=INTERVAL_S) as stack:
        with stack.driver() as client:
            today = dt.datetime.now(TOKYO).date()
            (move,) = find_moves(client, 1, today + dt.timedelta(days=2), 10)
        stack.seed_warehouse([move.old_day, move.new_day])
        root = stack.warehouse
        assert row_started_at(root, move.old_day, move.uid) is not None
        assert row_started_at(root, move.new_day, move.uid) is None
        stack.start_daemon()
        with stack.driver() as client:
            reschedule(client, move)
        deadline = time.monotonic() + TIMEOUT_S
        while not (
            row_started_at(root, move.new_day, move.uid) == move.new_start
            and row_started_at(root, move.old_day, move.uid) is None
        ):
            assert time.monotonic() < deadline, f"not refreshed in {TIMEOUT_S} s ({tmp_path})"
            time.sleep(POLL_S)
        events = [e for e in stack.journal() if e["method"] == "EVENT"]
        assert [(e["path"], e["booking_uid"]) for e in events] == [("host_rescheduled", move.uid)]
        # One run per range of consecutive days: the two days are one range if they touch.
        ranges = 1 if abs((move.new_day - move.old_day).days) == 1 else 2
        assert stack.wait_runs_done(TIMEOUT_S) == {"SUCCESS": ranges}
