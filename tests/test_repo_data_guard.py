"""The guard that keeps the suite out of the checkout's data/ (tests/support/repo_data_guard.py)
works: it guards the checkout's own data/, sees reads as well as writes, and no default path of a
test process or its children is there.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jicoo_connector.config import ConnectorConfig
from tests.support.repo_data_guard import REPO_DATA, OpenGuard, data_defaults

ROOT = REPO_DATA.parent
# The defaults the issue names; any other default under data/ is covered the same way.
NAMED = {
    "JICOO_WAREHOUSE_ROOT",
    "JICOO_DUCKDB_PATH",
    "JICOO_LEDGER_PATH",
    "JICOO_APPLY_LOG_ROOT",
    "JICOO_CHANGESET_INBOX",
    "JICOO_WEBHOOK_DB",
}
PRINT_PATHS = (
    "import json; from jicoo_connector.config import ConnectorConfig as C; c = C.from_env(); "
    "print(json.dumps({s.env: str(getattr(c, n)) for n, s in C.specs().items()}))"
)


def _under(path: str, root: Path) -> bool:
    resolved = Path(path).resolve()
    return resolved == root or root in resolved.parents


def test_the_guarded_folder_is_the_checkouts_data() -> None:
    checkout = Path(__file__).resolve().parents[1]
    assert (checkout / "pyproject.toml").is_file()
    assert checkout / "data" == REPO_DATA


def test_the_guard_records_reads_listings_and_sqlite_opens_under_its_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "notes.txt").write_text("a user's file", encoding="utf-8")
    (tmp_path / "elsewhere.txt").write_text("not watched", encoding="utf-8")
    guard = OpenGuard(root)
    with guard.watching() as touched:
        (root / "sub" / "notes.txt").read_text(encoding="utf-8")
        (tmp_path / "elsewhere.txt").read_text(encoding="utf-8")
        sorted(root.iterdir())
        sqlite3.connect(root / "events.sqlite").close()
    (root / "sub" / "notes.txt").read_text(encoding="utf-8")  # disarmed: not recorded
    seen = {(event, Path(path).relative_to(root).as_posix()) for event, path in touched}
    assert seen >= {("open", "sub/notes.txt"), ("sqlite3.connect", "events.sqlite")}
    assert {event for event, _ in touched} & {"os.listdir", "os.scandir"}
    assert all(_under(path, root) for _, path in touched)


def test_a_folder_of_the_same_name_elsewhere_is_not_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # shutil.rmtree walks by folder descriptor: "data" there is not the working directory's.
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "other" / "data" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    guard = OpenGuard(root)
    with guard.watching() as touched:
        shutil.rmtree(tmp_path / "other")
        Path("data", "mine.txt").write_text("relative to the working directory", encoding="utf-8")
    assert touched == [("open", str(root / "mine.txt"))]


def test_every_default_under_data_points_at_the_session_folder_here_and_in_children() -> None:
    overridden = data_defaults()
    assert set(overridden) >= NAMED
    config = ConnectorConfig.from_env()
    for env, default in overridden.items():
        value = os.environ[env]
        assert value != default
        assert not _under(value, REPO_DATA), env
    mine = {spec.env: str(getattr(config, name)) for name, spec in ConnectorConfig.specs().items()}
    # A child started from the checkout's root, as the suite starts the CLI and Dagster.
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", PRINT_PATHS],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child = json.loads(done.stdout)
    for env in overridden:
        assert child[env] == mine[env]
        assert not _under(str(ROOT / child[env]), REPO_DATA), env
