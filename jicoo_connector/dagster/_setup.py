"""One organization's setup, as every factory of this package takes it: its names, its
settings and the tables it extracts. Built by ``build_jicoo_definitions``."""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster._names import JicooNames
from jicoo_connector.errors import ConfigError
from jicoo_connector.extract import TABLES
from jicoo_connector.extract.sources import DaySource, TableSource

# What dg.define_asset_job returns (Dagster gives the type no public name).
AssetJob = UnresolvedAssetJobDefinition


@dataclass(frozen=True, slots=True)
class OrganizationSetup:
    names: JicooNames
    config: ConnectorConfig
    tables: tuple[str, ...]

    @property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        """Calendar days in the organization's zone, from its first partition to
        ``future_days`` after today (bookings are made ahead)."""
        return dg.DailyPartitionsDefinition(
            start_date=self.config.partition_start.isoformat(),
            timezone=self.config.timezone,
            end_offset=self.config.future_days,
        )

    def source(self, table: str) -> TableSource:
        return TABLES[table]

    @property
    def day_tables(self) -> tuple[str, ...]:
        return tuple(t for t in self.tables if isinstance(TABLES[t], DaySource))

    @property
    def snapshot_tables(self) -> tuple[str, ...]:
        return tuple(t for t in self.tables if not isinstance(TABLES[t], DaySource))

    def keys(self, tables: Sequence[str]) -> list[dg.AssetKey]:
        return [self.names.asset_key(table) for table in tables]


def chosen_tables(tables: Sequence[str] | None) -> tuple[str, ...]:
    """``tables`` checked against the registry, in its order (default: every table,
    registered ones included); a day table comes with the table whose listing feeds it."""
    known = tuple(TABLES)
    if tables is None:
        return known
    unknown = sorted(set(tables) - set(known))
    if unknown:
        raise ConfigError(f"tables: unknown {unknown}; the tables are {', '.join(known)}")
    for table in tables:
        source = TABLES[table]
        if isinstance(source, DaySource) and source.feed.table not in tables:
            raise ConfigError(
                f"tables: {table} is made from {source.feed.table}'s partitions; "
                f"add {source.feed.table}"
            )
    return tuple(t for t in known if t in tables)
