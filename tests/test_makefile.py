"""`make clean` keeps a user's state; `make clean-all` names it before deleting it."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = (
    "data/ledger.sqlite",
    "data/ledger.sqlite-wal",
    "data/ledger.sqlite.0123456789abcdef.lock",
    "data/webhook_events.sqlite",
    "data/apply_log/batch=real/run-1.parquet",
    "data/warehouse/bookings/day=2026-01-01/data.parquet",
    "data/warehouse.duckdb",
)


def _checkout(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    made = (*STATE, "data/demo/ledger.sqlite", ".venv/bin/python", ".dagster_home/x", "elsewhere/x")
    for name in made:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("sentinel", encoding="utf-8")
    return tmp_path


def _make(checkout: Path, target: str) -> str:
    done = subprocess.run(  # noqa: S603
        ["make", "--no-print-directory", target],  # noqa: S607
        cwd=checkout,
        # A DAGSTER_HOME elsewhere (a real deployment's) is never make's to delete.
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(checkout / "elsewhere")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_make_clean_keeps_the_ledger_apply_log_and_warehouse(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    _make(checkout, "clean")
    assert not (checkout / ".venv").exists()
    assert not (checkout / "data" / "demo").exists()
    for name in STATE:
        assert (checkout / name).read_text(encoding="utf-8") == "sentinel", name
    assert (checkout / ".dagster_home" / "x").exists()


def test_make_clean_all_names_what_it_deletes(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    out = _make(checkout, "clean-all")
    named = out.split("Deleting, for good: ", 1)[1].split("\n", 1)[0].split()
    assert {"data/ledger.sqlite", "data/apply_log", "data/warehouse"} <= set(named)
    for name in STATE:
        assert not (checkout / name).exists(), name
    assert not (checkout / ".dagster_home").exists()
    assert (checkout / "elsewhere" / "x").exists()
