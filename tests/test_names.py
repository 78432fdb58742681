"""Table and column names are checked where they enter: registration refuses, in one line
naming it, any name some warehouse or the Parquet layout would not keep as it is."""

from collections.abc import Iterator

import pyarrow as pa
import pytest

from jicoo_connector.errors import ConfigError
from jicoo_connector.extract import TABLES, register_table, unregister_table
from jicoo_connector.extract.sources import SnapshotSource, listing
from jicoo_connector.names import MAX_NAME_BYTES, check_column_names, fitted_name
from jicoo_connector.tables import TableSpec, column, struct_list_column

LONG = "booking_" + "x" * (MAX_NAME_BYTES - len("booking_"))  # exactly 63 bytes
HOSTILE_NAMES = [
    "../../x",
    "a/b",
    "a.b",
    'x"; DROP TABLE bookings; --',
    "Bookings",
    "with space",
    "",
    "ü",
    "_jicoo_loads",
    LONG + "y",
    "é" * 32,  # 32 characters, 64 bytes
]


def _source(
    table: str, columns: tuple[str, ...] = ("uid",), nested: str = "name"
) -> SnapshotSource:
    cols = tuple(column(name, name, pa.string(), doc="") for name in columns)
    hosts = struct_list_column("hosts", "hosts", [(nested, nested, pa.string())], doc="")
    spec = TableSpec(table, (*cols, hosts), (columns[0],), "snapshot")
    return SnapshotSource(spec, ("GET /v1/users",), listing(lambda c: c.list_organization_users()))


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names a test registered; unregistered afterwards, whether refused or not."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_table(name)


def _refused(source: SnapshotSource, registered: list[str]) -> ConfigError:
    registered.append(source.table)
    with pytest.raises(ConfigError) as refused:
        register_table(source)
    message = str(refused.value)
    assert "\n" not in message
    assert source.table not in TABLES
    return refused.value


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_table_name_no_warehouse_keeps_as_is_is_refused_at_registration(
    name: str, registered: list[str]
) -> None:
    refused = _refused(_source(name), registered)
    assert f"table name {name!r}" in str(refused)


def test_two_tables_sharing_their_first_63_bytes_cannot_both_register(
    registered: list[str],
) -> None:
    """PostgreSQL cuts names at 63 bytes: the second table would have been loaded into the
    first, and the load state would still have shown each table's own counts."""
    registered.append(LONG)
    register_table(_source(LONG))
    refused = _refused(_source(LONG + "_v2"), registered)
    assert "66 bytes long; the limit is 63" in str(refused)


@pytest.mark.parametrize(
    "name",
    ["a" * 64, 'x"); DROP TABLE bookings; --', "Uid", "a.b", "a/b", "_partitiontime", "ü"],
)
def test_a_column_name_no_warehouse_keeps_as_is_is_refused(
    name: str, registered: list[str]
) -> None:
    refused = _refused(_source("hostile_columns", ("uid", name)), registered)
    assert f"column 'hostile_columns.{name}'" in str(refused)


@pytest.mark.parametrize("name", ['f"); DROP TABLE bookings; --', "b" * 64, "Name"])
def test_a_nested_field_name_is_checked_too(name: str, registered: list[str]) -> None:
    refused = _refused(_source("hostile_fields", nested=name), registered)
    assert f"column 'hostile_fields.hosts.{name}'" in str(refused)


def test_two_columns_one_name_apart_in_case_are_refused() -> None:
    schema = pa.schema([pa.field("uid", pa.string()), pa.field("uid", pa.int64())])
    with pytest.raises(ConfigError, match=r"column 't\.uid' appears twice"):
        check_column_names("t", schema)


def test_every_built_in_table_passes() -> None:
    for name, source in TABLES.items():
        check_column_names(name, source.spec.schema)


def test_derived_names_stay_apart_within_the_limit() -> None:
    first = fitted_name(f"{LONG}_snapshot_date_idx")
    second = fitted_name(f"{LONG[:-1]}z_snapshot_date_idx")
    assert len(first.encode()) <= MAX_NAME_BYTES
    assert len(second.encode()) <= MAX_NAME_BYTES
    assert first != second
    assert fitted_name("bookings_day_idx") == "bookings_day_idx"
