"""Every identifier that reaches SQL is quoted by the dialect's one function, nested fields
included: hostile names, run live on DuckDB and PostgreSQL, create exactly the columns named
and run nothing else. (Registration refuses such names; this is the second wall.)"""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from jicoo_connector.warehouse import WarehouseTarget
from jicoo_connector.warehouse._loader import _JsonEncoder
from jicoo_connector.warehouse._session import Session, open_session
from jicoo_connector.warehouse._sql import Dialect, LoadRecord

INJECTION = '"); DROP TABLE victim; --'
COLUMNS = [f"x{INJECTION}", "with space", "select", 'q"q', "ü", "semi;colon", "back`tick"]
NESTED = f"hosts{INJECTION}"
FIELD = f"f{INJECTION}"
DAY = dt.date(2026, 12, 1)
TABLE = "hostile_identifiers"
STAGE = "hostile_identifiers_stage"


def _schema() -> pa.Schema:
    nested = pa.list_(pa.struct([pa.field(FIELD, pa.string()), pa.field("n", pa.int64())]))
    return pa.schema(
        [
            *(pa.field(name, pa.string()) for name in COLUMNS),
            pa.field(NESTED, nested),
            pa.field("day", pa.date32(), nullable=False),
        ]
    )


def _batch() -> pa.RecordBatch:
    schema = _schema()
    row: dict[str, object] = {name: f"value of {name}" for name in COLUMNS}
    row[NESTED] = [{FIELD: "nested value", "n": 7}]
    row["day"] = DAY
    return pa.RecordBatch.from_pylist([row], schema=schema)


def _staged(dialect: Dialect) -> pa.RecordBatchReader:
    batch = _batch()
    if not dialect.nested_as_json:
        return pa.RecordBatchReader.from_batches(batch.schema, [batch])
    as_text = pa.schema(
        [pa.field(f.name, pa.string()) if f.name == NESTED else f for f in batch.schema]
    )
    encoder = _JsonEncoder()  # the loader's own: it writes SQL with the nested column's name
    try:
        encoded = encoder.encode(batch, [NESTED], as_text)
    finally:
        encoder.close()
    return pa.RecordBatchReader.from_batches(as_text, [encoded])


def _load(session: Session) -> None:
    dialect = session.dialect
    session.execute("CREATE TABLE victim (x integer)")
    for statement in [*dialect.loads_table(), *dialect.create_table(TABLE, _schema(), "day")]:
        session.execute(statement)
    session.ingest(STAGE, _staged(dialect))
    record = LoadRecord(TABLE, DAY, "1:2", 1)
    for statement in dialect.merge(TABLE, STAGE, _schema(), "day", [record], None):
        session.execute(statement)
    session.commit()


def _nested_value(raw: object) -> list[dict[str, object]]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    assert isinstance(value, list)
    return [dict(item) for item in value]


@pytest.fixture(params=["duckdb", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> WarehouseTarget:
    if request.param == "duckdb":
        return WarehouseTarget.parse(str(tmp_path / "hostile.duckdb"))
    url: str = request.getfixturevalue("postgres_url")
    return WarehouseTarget.parse(url)


def test_hostile_column_and_field_names_are_quoted_live(target: WarehouseTarget) -> None:
    with open_session(target) as session:
        _load(session)
        dialect = session.dialect
        columns = [name for name, _ in session.query(dialect.columns_query(TABLE))]
        assert columns == [*COLUMNS, NESTED, "day"]
        assert session.query(dialect.columns_query("victim"))  # nothing was dropped
        selected = ", ".join(dialect.ident(name) for name in [*COLUMNS, NESTED])
        (row,) = session.query(f"SELECT {selected} FROM {dialect.table(TABLE)}")  # noqa: S608
        assert list(row[: len(COLUMNS)]) == [f"value of {name}" for name in COLUMNS]
        assert _nested_value(row[-1]) == [{FIELD: "nested value", "n": 7}]


@pytest.mark.parametrize("backend", ["duckdb", "postgresql", "snowflake", "bigquery"])
def test_one_quoting_function_per_dialect(backend: str) -> None:
    from jicoo_connector.warehouse._ident import quote_identifier

    dialect = Dialect(backend)  # type: ignore[arg-type]
    for name in ["day", "select", "with space"]:
        assert dialect.ident(name) == quote_identifier(backend, name)  # type: ignore[arg-type]
    if backend == "bigquery":
        for name in ["back`tick", "back\\slash", "new\nline"]:
            with pytest.raises(Exception, match="refusing identifier"):
                dialect.ident(name)
    else:
        assert dialect.ident('q"q') == '"q""q"'
