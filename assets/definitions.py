"""The one `Definitions` object that workspace.yaml loads."""

import os

import dagster as dg

from assets.automation import (
    daily_tables_job,
    jicoo_refresh_schedule,
    jicoo_snapshots_schedule,
    jicoo_sweep_schedule,
    snapshots_job,
)
from assets.extract_assets import extract_assets
from assets.resources import (
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LEDGER_PATH,
    DEFAULT_WAREHOUSE_ROOT,
    JicooResource,
    WarehouseResource,
)
from assets.warehouse import warehouse_tables
from assets.webhook_sensor import booking_events_sensor, webhook_refresh_job
from assets.writeback import (
    DEFAULT_APPLY_LOG_ROOT,
    WriteBackResource,
    apply_changeset_job,
    apply_log,
    changeset_inbox_sensor,
)
from jicoo_connector.changes.ledger_backends import LEDGER_URL_ENV
from jicoo_connector.errors import ConfigError
from jicoo_connector.settings import DEFAULT_BASE_URL, DEFAULT_BURST, DEFAULT_RATE_LIMIT


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc


defs = dg.Definitions(
    assets=[*extract_assets, warehouse_tables, apply_log],
    jobs=[daily_tables_job, snapshots_job, apply_changeset_job, webhook_refresh_job],
    sensors=[changeset_inbox_sensor, booking_events_sensor],
    schedules=[jicoo_refresh_schedule, jicoo_sweep_schedule, jicoo_snapshots_schedule],
    resources={
        # The key only ever through EnvVar: a literal would show in the resource's repr and UI.
        "jicoo": JicooResource(
            api_key=dg.EnvVar("JICOO_API_KEY"),
            base_url=os.environ.get("JICOO_BASE_URL", DEFAULT_BASE_URL),
            # The account's budget: each API step (one at a time, see API_POOL) paces to it.
            rate_limit=_env_number("JICOO_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            burst=int(_env_number("JICOO_BURST", DEFAULT_BURST)),
        ),
        "warehouse": WarehouseResource(
            root=os.environ.get("JICOO_WAREHOUSE_ROOT", DEFAULT_WAREHOUSE_ROOT),
            duckdb_path=os.environ.get("JICOO_DUCKDB_PATH", DEFAULT_DUCKDB_PATH),
            # Through EnvVar: the URL may hold a password, which the UI must never show.
            url=dg.EnvVar("JICOO_WAREHOUSE_URL") if os.environ.get("JICOO_WAREHOUSE_URL") else "",
        ),
        "writeback": WriteBackResource(
            ledger_path=os.environ.get("JICOO_LEDGER_PATH", DEFAULT_LEDGER_PATH),
            # Through EnvVar: the URL may carry a password, which must not show in the UI.
            ledger_url=dg.EnvVar(LEDGER_URL_ENV) if os.environ.get(LEDGER_URL_ENV) else None,
            apply_log_root=os.environ.get("JICOO_APPLY_LOG_ROOT", DEFAULT_APPLY_LOG_ROOT),
        ),
    },
)
