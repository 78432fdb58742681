"""The load most users would write instead of `jicoo load`: the baseline of the warehouse benchmark.

``pandas.read_parquet`` of the bookings table, nested lists to JSON text (psycopg cannot adapt a
list of dicts), then ``DataFrame.to_sql`` through SQLAlchemy + psycopg with ``method="multi"``
and the largest chunk PostgreSQL's 65,535 bind parameters allow (the fastest this path goes).
Imports nothing of ours.

    python benchmarks/pandas_to_sql.py --root DIR --url postgresql://user@host:5432/db
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy

MAX_BIND_PARAMETERS = 65_535
NESTED = ("hosts",)


def _json(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value)


def main() -> int:
    parser = argparse.ArgumentParser(description="baseline: pandas.DataFrame.to_sql, multi")
    parser.add_argument("--root", type=Path, required=True, help="Parquet root (hive layout)")
    parser.add_argument("--url", required=True, help="postgresql://... (psycopg driver)")
    parser.add_argument("--table", default="bookings")
    args = parser.parse_args()

    started = time.perf_counter()
    frame = pd.read_parquet(args.root / args.table)
    for column in NESTED:
        frame[column] = frame[column].map(_json)
    engine = sqlalchemy.create_engine(args.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        frame.to_sql(
            args.table,
            connection,
            if_exists="replace",
            index=False,
            method="multi",
            chunksize=MAX_BIND_PARAMETERS // len(frame.columns),
        )
    engine.dispose()
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": len(frame), "seconds": elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
