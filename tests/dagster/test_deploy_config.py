"""deploy/dagster.yaml is a valid instance for the installed Dagster, on a real PostgreSQL."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator

from jicoo_connector.dagster import JicooNames
from tests.support.postgres_server import dagster_url

DEPLOY = Path(__file__).parents[2] / "deploy"
# Each organization's pool gets the default limit: two here, as a code location may hold both.
POOLS = (JicooNames("acme").pool, JicooNames("globex").pool)


def test_the_deploy_instance_queues_runs_and_limits_the_api_pool(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url(postgres_url))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        config = instance.get_concurrency_config()
        assert config.run_queue_config is not None
        assert config.run_queue_config.max_concurrent_runs == 4
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity is not None
        assert config.pool_config.pool_granularity.value == "op"
        assert config.pool_config.op_granularity_run_buffer == 1
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        # The pool the API-calling assets name gets the default limit of one slot.
        for pool in POOLS:
            instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 1
