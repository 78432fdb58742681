"""Where a webhook refresh's time goes: each run of the freshness benchmark, stage by stage,
from the instance's event log and the event store.

The stages, in order (seconds):

- ``tick_wait``: its first event recorded by the receiver -> the run requested by a sensor tick
  (the tick interval, and the hold while an earlier refresh was still queued);
- ``plan``: requested -> enqueued (the daemon writes the run and its planned materializations
  and checks);
- ``queue``: enqueued -> launched (the coordinator's dequeue interval, the pool's run buffer);
- ``spawn``: launched -> the run worker's process started by the code server;
- ``load``: process started -> the run started (``dagster api execute_run``'s imports and the
  code location loaded);
- ``to_step``: run started -> its first step started (resources, the pool's slot);
- ``steps``: first step started -> the run ended (the API requests, Parquet, the checks).
"""

import datetime as dt
import sqlite3
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from jicoo_connector.dagster._webhooks import EVENT_IDS_TAG

STAGES = ("tick_wait", "plan", "queue", "spawn", "load", "to_step", "steps")
# The event that ends each stage after the run's request (the first of its kind).
MARKS = {
    "PIPELINE_ENQUEUED": "enqueued",
    "PIPELINE_STARTING": "launched",
    "ENGINE_EVENT": "process",
    "PIPELINE_START": "started",
    "STEP_START": "step",
    "PIPELINE_SUCCESS": "ended",
    "PIPELINE_FAILURE": "ended",
    "PIPELINE_CANCELED": "ended",
}


def _first_ids(spans: str) -> int:
    """The first id of a run's ``jicoo/webhook_event_ids`` tag (``3-7,9``)."""
    return min(int(span.split("-")[0]) for span in spans.split(","))


def _received(events_db: Path) -> dict[int, float]:
    with sqlite3.connect(events_db) as db:
        rows = db.execute("SELECT id, received_at FROM webhook_events").fetchall()
    return {int(i): dt.datetime.fromisoformat(at).timestamp() for i, at in rows}


def _marks(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    marks: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        name = MARKS.get(event.event_type_value) if event is not None else None
        if name is not None and name not in marks:
            marks[name] = entry.timestamp
    return marks


def _stages(first_event: float, requested: float, marks: Mapping[str, float]) -> dict[str, float]:
    points = [first_event, requested] + [
        marks.get(name, float("nan"))
        for name in ("enqueued", "launched", "process", "started", "step", "ended")
    ]
    return {
        stage: round(end - start, 1)
        for stage, start, end in zip(STAGES, points, points[1:], strict=False)
    }


def run_timelines(home: Path, events_db: Path) -> list[dict[str, object]]:
    """Each webhook refresh run, oldest first: its events and its stages."""
    received = _received(events_db)
    out: list[dict[str, object]] = []
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        for record in records:
            ids = record.dagster_run.tags.get(EVENT_IDS_TAG)
            if not ids:
                continue
            first = received[_first_ids(ids)]
            marks = _marks(instance, record.dagster_run.run_id)
            stages = _stages(first, record.create_timestamp.timestamp(), marks)
            out.append({"events": ids, **stages, "total": round(sum(stages.values()), 1)})
    return out


def summarize(timelines: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """The median and maximum of each stage over the runs."""
    summary: dict[str, dict[str, float]] = {}
    for stage in (*STAGES, "total"):
        values = [float(str(t[stage])) for t in timelines if t[stage] == t[stage]]
        if values:
            summary[stage] = {"median": round(statistics.median(values), 1), "max": max(values)}
    return summary
