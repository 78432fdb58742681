"""Helpers for the code-location tests: resources on the sandbox, range tags, event lookups."""

import datetime as dt
import itertools
from collections.abc import Collection
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.extract_assets import build_extract_assets
from assets.partitions import daily_partitions
from assets.resources import JicooResource, WarehouseResource
from jicoo_connector.config import ConnectorConfig
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import TEST_BURST, TEST_RATE_LIMIT


def extract_assets(config: ConnectorConfig | None = None) -> dict[str, dg.AssetsDefinition]:
    """The code location's extract assets (default settings), by table name."""
    built = build_extract_assets(daily_partitions(config or ConnectorConfig()))
    return {asset.key.path[-1]: asset for asset in built}


def jicoo_resource(sandbox: SandboxServer, api_key: str | None = None) -> JicooResource:
    return JicooResource(
        api_key=api_key or sandbox.api_key,
        base_url=sandbox.base_url,
        rate_limit=TEST_RATE_LIMIT,
        burst=TEST_BURST,
    )


def warehouse_resource(root: Path) -> WarehouseResource:
    return WarehouseResource(root=str(root / "wh"), duckdb_path=str(root / "wh.duckdb"))


def range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
    }


def materializations(
    result: dg.ExecuteInProcessResult, key: dg.AssetKey
) -> list[dg.AssetMaterialization]:
    return [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == key
    ]


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """``asset/check`` -> passed, for every check evaluated in the run."""
    out: dict[str, bool] = {}
    for event in result.get_asset_check_evaluations():
        out[f"{event.asset_key.to_user_string()}/{event.check_name}"] = event.passed
    return out


def step_spans(
    instance: dg.DagsterInstance, steps: Collection[str]
) -> list[tuple[float, float, str]]:
    """(start, end, step key) of every successful step among ``steps``, in every run of the
    instance, in order of start."""
    spans = []
    for run in instance.get_runs():
        starts: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or entry.step_key not in steps:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[entry.step_key] = entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                spans.append((starts[entry.step_key], entry.timestamp, entry.step_key))
    return sorted(spans)


def assert_one_at_a_time(spans: list[tuple[float, float, str]]) -> None:
    """No two of the spans (from ``step_spans``) overlap: a pool of one slot at work."""
    for (_, ended, first), (started, _, second) in itertools.pairwise(spans):
        assert ended <= started, f"{first} and {second} overlapped"
