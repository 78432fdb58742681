"""The code location `workspace.yaml` loads: one Jicoo organization (``JICOO_ORGANIZATION``,
default ``default``) built by the shipped factory, every setting from the ``JICOO_*``
variables. ``defs`` reads them when Dagster loads it, never at import; ``build_definitions``
takes any config (the demo, tests).
"""

import dagster as dg

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster import build_jicoo_definitions
from jicoo_connector.errors import ConfigError


def _variable(config: ConnectorConfig, name: str) -> dg.EnvVar | None:
    """A setting that may hold a password, as Dagster takes it: its variable, which the UI
    shows instead of the value (and Dagster reads when a run starts)."""
    return dg.EnvVar(ConnectorConfig.specs()[name].env) if getattr(config, name) else None


def build_definitions(config: ConnectorConfig) -> dg.Definitions:
    return build_jicoo_definitions(
        config.organization,
        # The key only ever through EnvVar. (The config's own copy is for the CLI.)
        api_key=dg.EnvVar(ConnectorConfig.specs()["api_key"].env),
        config=config,
        proxy_url=_variable(config, "proxy_url"),
        warehouse_url=_variable(config, "warehouse_url"),
        warehouse_password=_variable(config, "warehouse_password"),
        ledger_url=_variable(config, "ledger_url"),
    )


@dg.definitions
def defs() -> dg.Definitions:
    try:
        config = ConnectorConfig.from_env()
    except ConfigError as exc:
        # Raised afresh: Dagster prints the message and this one frame, not our parser's stack.
        raise ConfigError(str(exc)) from None
    return build_definitions(config)
