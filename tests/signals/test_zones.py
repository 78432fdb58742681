"""Days cut in two zones never mix silently: each partition records its zone (Parquet footer,
the warehouse's _jicoo_loads), an extract into a folder cut in another zone is refused before
any request, and so is a load into a warehouse holding another zone's days."""

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from jicoo_connector.storage import ZONE_KEY
from jicoo_sandbox.server import SandboxServer
from tests.signals.support import environment, one_line, run


def _extract(sandbox: SandboxServer, tmp_path: Path, out: Path, zone: str) -> tuple[int, str]:
    day = str(sandbox.store.anchor)
    args = ["extract", "--tables", "bookings", "--start", day, "--end", day, "--out", str(out)]
    done = run(
        *args, "--timezone", zone, "--quiet", env=environment(sandbox, tmp_path), cwd=tmp_path
    )
    return done.returncode, done.stderr


def _files(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_an_extract_in_another_zone_into_the_same_folder_is_refused_before_any_request(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    out = tmp_path / "wh"
    assert _extract(sandbox, tmp_path, out, "Asia/Tokyo") == (0, "")
    (written,) = list(out.rglob("data.parquet"))
    assert pq.read_schema(written).metadata[ZONE_KEY.encode()] == b"Asia/Tokyo"
    before = _files(out)
    sandbox.clear_requests()

    code, err = _extract(sandbox, tmp_path, out, "UTC")

    assert code == 2
    assert one_line(err) == (
        f"jicoo: bookings in {out} holds days cut in Asia/Tokyo, not UTC: extract with the same "
        "zone (--timezone Asia/Tokyo), or into a new folder (--out NEW --full)"
    )
    assert _files(out) == before
    assert sandbox.requests() == []
    # What the line says to do works.
    assert _extract(sandbox, tmp_path, tmp_path / "utc", "UTC") == (0, "")


def test_the_warehouse_records_each_partitions_zone_and_refuses_another_zones_days(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    env = environment(sandbox, tmp_path)
    for zone, root in (("Asia/Tokyo", tmp_path / "tokyo"), ("UTC", tmp_path / "utc")):
        assert _extract(sandbox, tmp_path, root, zone) == (0, "")
    load = ["load", "--tables", "bookings", "--warehouse-url", str(warehouse), "--root"]
    assert run(*load, str(tmp_path / "tokyo"), env=env, cwd=tmp_path).returncode == 0
    query = "SELECT time_zone, count(*) FROM _jicoo_loads WHERE table_name = 'bookings' GROUP BY 1"
    with duckdb.connect(str(warehouse), read_only=True) as db:
        assert db.sql(query).fetchall() == [("Asia/Tokyo", 1)]
        rows = db.sql("SELECT count(*) FROM bookings").fetchall()

    done = run(*load, str(tmp_path / "utc"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "jicoo: bookings: days cut in Asia/Tokyo are in the warehouse, and these partitions "
        "were cut in UTC: load them into another warehouse, or extract again in the "
        "warehouse's zone"
    )
    with duckdb.connect(str(warehouse), read_only=True) as db:
        assert db.sql(query).fetchall() == [("Asia/Tokyo", 1)]
        assert db.sql("SELECT count(*) FROM bookings").fetchall() == rows
