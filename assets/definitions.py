"""The code location: ``defs`` (what workspace.yaml loads) reads ``ConnectorConfig.from_env()``
when Dagster loads it, never at import; ``build_definitions`` takes any config (the demo, tests).
"""

import dagster as dg

from assets.automation import build_schedules, daily_tables_job, snapshots_job
from assets.extract_assets import build_extract_assets
from assets.partitions import daily_partitions
from assets.resources import JicooResource, WarehouseResource
from assets.warehouse import build_warehouse_asset
from assets.webhook_sensor import build_booking_events_sensor, webhook_refresh_job
from assets.writeback import (
    WriteBackResource,
    apply_changeset_job,
    apply_log_for,
    changeset_inbox_sensor,
)
from jicoo_connector.config import ConnectorConfig
from jicoo_connector.errors import ConfigError


def build_definitions(config: ConnectorConfig) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *build_extract_assets(daily_partitions(config)),
            build_warehouse_asset(config),
            apply_log_for(config.ledger_location()),
        ],
        jobs=[daily_tables_job, snapshots_job, apply_changeset_job, webhook_refresh_job],
        sensors=[changeset_inbox_sensor, build_booking_events_sensor(config)],
        schedules=build_schedules(config),
        resources={
            # The key only ever through EnvVar: a literal would show in the resource's repr and
            # UI. (The config's own copy of it is for the CLI; it never reaches Dagster.)
            "jicoo": JicooResource(
                api_key=dg.EnvVar("JICOO_API_KEY"),
                base_url=config.base_url,
                # The account's budget: each API step (one at a time, see API_POOL) paces to it.
                rate_limit=config.rate_limit,
                burst=config.burst,
                request_deadline=config.request_deadline,
                # Through EnvVar: a proxy URL may carry a password, which must not show in the UI.
                proxy_url=dg.EnvVar("JICOO_PROXY_URL") if config.proxy_url else None,
                ca_bundle=config.ca_bundle,
                tls_trust=config.tls_trust,
            ),
            "warehouse": WarehouseResource(
                root=config.warehouse_root,
                duckdb_path=config.duckdb_path,
                # Through EnvVar: the URL may hold a password, which the UI must never show.
                url=dg.EnvVar("JICOO_WAREHOUSE_URL") if config.warehouse_url else "",
                password=(
                    dg.EnvVar("JICOO_WAREHOUSE_PASSWORD") if config.warehouse_password else None
                ),
            ),
            "writeback": WriteBackResource(
                ledger_path=config.ledger_path,
                # Through EnvVar: the URL may carry a password, which must not show in the UI.
                ledger_url=dg.EnvVar("JICOO_LEDGER_URL") if config.ledger_url else None,
                apply_log_root=config.apply_log_root,
                inbox=config.changeset_inbox,
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    try:
        config = ConnectorConfig.from_env()
    except ConfigError as exc:
        # Raised afresh: Dagster prints the message and this one frame, not our parser's stack.
        raise ConfigError(str(exc)) from None
    return build_definitions(config)
