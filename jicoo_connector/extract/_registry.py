"""The table registry: every table the connector extracts, built in or registered, as one
declaration (a ``SnapshotSource`` or ``DaySource``: its spec and its source together).

Importing this module registers the built-in tables (``catalog.BUILT_IN``, in that order);
``register_table`` adds a user's. Everything that lists or looks up tables (the run loop, the
CLI's ``--tables``, the Dagster assets, the warehouse load) reads ``TABLES``. Nothing below the
extractor (``tables``, ``storage``, ``quality``) looks a table up by name: they are handed its
``TableSpec``.
"""

from collections.abc import Mapping
from types import MappingProxyType

from jicoo_connector.errors import ConfigError
from jicoo_connector.extract.catalog import BUILT_IN
from jicoo_connector.extract.sources import DaySource, TableSource
from jicoo_connector.names import check_column_names, check_table_name
from jicoo_connector.quality import RULES

__all__ = ["TABLES", "register_table", "unregister_table"]

_TABLES: dict[str, TableSource] = {}
# Table name -> its declaration, in registration order (the built-in tables first); a live,
# read-only view: a table registered later is seen everywhere.
TABLES: Mapping[str, TableSource] = MappingProxyType(_TABLES)


def register_table(source: TableSource) -> None:
    """Add a table: after this, extract_range, the CLI's ``--tables``, the Dagster assets (with
    one check per quality rule of its spec) and the warehouse load know it. The one way in, for
    the built-in tables too: every check of a declaration is made here."""
    spec = source.spec
    # Checked here, where a name enters: every warehouse and the Parquet layout keep it as is.
    check_table_name(source.table)
    check_column_names(source.table, spec.schema)
    if source.table in _TABLES:
        raise ConfigError(f"a table named {source.table!r} is already registered")
    expected = "day" if isinstance(source, DaySource) else "snapshot"
    if spec.partitioning != expected:
        raise ConfigError(
            f"{source.table}: a {type(source).__name__} is partitioned by {expected}, "
            f"its spec by {spec.partitioning}"
        )
    if isinstance(source, DaySource) and source.feed.table not in (source.table, *_TABLES):
        raise ConfigError(f"{source.table}: its feed's table {source.feed.table!r} is unknown")
    unknown = sorted(set(spec.checks) - set(RULES))
    if unknown:
        raise ConfigError(f"{source.table}: unknown checks {unknown}; known: {sorted(RULES)}")
    _TABLES[source.table] = source


def unregister_table(name: str) -> None:
    """Remove a table added with register_table (the built-in tables stay)."""
    if name in _BUILT_IN:
        raise ConfigError(f"{name} is built in")
    _TABLES.pop(name, None)


def _register_built_in() -> frozenset[str]:
    for source in BUILT_IN:
        register_table(source)
    return frozenset(source.table for source in BUILT_IN)


_BUILT_IN = _register_built_in()
