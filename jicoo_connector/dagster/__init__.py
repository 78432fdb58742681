"""The Dagster integration: the only part of jicoo_connector that imports dagster.

``build_jicoo_definitions(organization=..., api_key=dg.EnvVar(...))`` makes one organization's
assets, jobs, schedules, sensors and resources; ``JicooComponent`` is the same as a ``dg``
Component (``dg scaffold defs jicoo_connector.dagster.JicooComponent acme``), discovered
through the ``dagster_dg_cli.registry_modules`` entry point. ``JicooNames`` spells every name
an organization's definitions carry.
"""

from jicoo_connector.dagster._component import JicooComponent, JicooScaffolder
from jicoo_connector.dagster._extract import ExtractConfig
from jicoo_connector.dagster._factory import (
    JicooSettings,
    build_jicoo_definitions,
    default_data_root,
)
from jicoo_connector.dagster._names import JicooNames
from jicoo_connector.dagster._resources import JicooResource, WarehouseResource, WriteBackResource
from jicoo_connector.dagster._warehouse import WarehouseLoadConfig
from jicoo_connector.dagster._writeback import ApplyChangesetConfig

__all__ = [
    "ApplyChangesetConfig",
    "ExtractConfig",
    "JicooComponent",
    "JicooNames",
    "JicooResource",
    "JicooScaffolder",
    "JicooSettings",
    "WarehouseLoadConfig",
    "WarehouseResource",
    "WriteBackResource",
    "build_jicoo_definitions",
    "default_data_root",
]
