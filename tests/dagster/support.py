"""Helpers for the Dagster tests: one organization's definitions on the sandbox (built by the
shipped factory, as a user builds them), range tags, event lookups."""

import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Collection, Iterable
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from jicoo_connector.dagster import (
    JicooNames,
    JicooResource,
    WarehouseResource,
    WriteBackResource,
    build_jicoo_definitions,
)
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import TEST_BURST, TEST_RATE_LIMIT

# The organization of the tests' definitions, and so every Dagster name they use.
NAMES = JicooNames("test")


def api_key(key: str) -> dg.EnvVar:
    """``key`` as Dagster takes it, a variable (set here for this process and its children,
    under a name of its own, so two keys never share one)."""
    variable = f"JICOO_TEST_KEY_{hashlib.sha256(key.encode()).hexdigest()[:12].upper()}"
    os.environ[variable] = key
    return dg.EnvVar(variable)


def definitions(
    sandbox: SandboxServer,
    root: Path,
    *,
    key: str | None = None,
    names: JicooNames = NAMES,
    **settings: object,
) -> dg.Definitions:
    """One organization on ``sandbox``, every file under ``root`` (its data_root)."""
    return build_jicoo_definitions(
        names.organization,
        api_key=api_key(key or sandbox.api_key),
        data_root=str(root),
        base_url=sandbox.base_url,
        rate_limit=TEST_RATE_LIMIT,
        burst=TEST_BURST,
        **settings,
    )


def assets(
    defs: dg.Definitions, tables: Iterable[str], names: JicooNames = NAMES
) -> list[dg.AssetsDefinition]:
    return [defs.resolve_assets_def(names.asset_key(table)) for table in tables]


def materialize(
    defs: dg.Definitions, tables: Iterable[str], **kwargs: object
) -> dg.ExecuteInProcessResult:
    """``tables``' assets (``warehouse`` and ``apply_log`` included) in one run; resolved
    from the definitions, they carry its resources."""
    return dg.materialize(assets(defs, tables), **kwargs)


def resource_of(defs: dg.Definitions, key: str) -> object:
    """A resource as a run gets it (EnvVars read)."""
    resource = (defs.resources or {})[key]
    assert isinstance(resource, dg.ConfigurableResource)
    return resource.process_config_and_initialize()


def warehouse_of(defs: dg.Definitions, names: JicooNames = NAMES) -> WarehouseResource:
    resource = resource_of(defs, names.warehouse_resource)
    assert isinstance(resource, WarehouseResource)
    return resource


def writeback_of(defs: dg.Definitions, names: JicooNames = NAMES) -> WriteBackResource:
    resource = resource_of(defs, names.writeback_resource)
    assert isinstance(resource, WriteBackResource)
    return resource


def jicoo_of(defs: dg.Definitions, names: JicooNames = NAMES) -> JicooResource:
    resource = resource_of(defs, names.api_resource)
    assert isinstance(resource, JicooResource)
    return resource


def store_of(defs: dg.Definitions, names: JicooNames = NAMES) -> ParquetStore:
    return warehouse_of(defs, names).store()


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


def observations(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> list[dg.AssetObservation]:
    return [
        event.asset_observation_data.asset_observation
        for event in result.get_asset_observation_events()
        if event.asset_observation_data.asset_observation.asset_key == key
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
