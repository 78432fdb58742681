"""The README's snippets, run the way a user copies them: in a shell, from a checkout's root,
against the sandbox. The only edits are the ones a user makes: their key and base URL.

The checkout is a temporary folder that links the repository's code and environment, so
whatever the snippets write (data/warehouse, .dagster_home) lands under pytest's tmp path.
"""

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest

from jicoo_connector.changes import APPLY_LOG, parse_changeset
from jicoo_connector.extract import TABLES
from jicoo_connector.storage import ParquetStore
from jicoo_connector.warehouse import load_warehouse
from jicoo_sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
LINKED = ("assets", "jicoo_connector", ".venv", "workspace.yaml", "pyproject.toml")
UNTHROTTLED = {"JICOO_RATE_LIMIT": "2000", "JICOO_BURST": "500"}
# Long-running servers: started elsewhere in the suite (make dev, the sandbox fixture).
SERVERS = (".venv/bin/dagster dev",)


def _blocks(language: str, containing: str) -> list[str]:
    found = [body for lang, body in BLOCKS if lang == language and containing in body]
    assert found, f"no {language} snippet with {containing!r} in the README"
    return found


def _as_user(snippet: str, sandbox: SandboxServer) -> str:
    """The user's own key and base URL in place of the README's placeholders."""
    snippet = re.sub(r"JICOO_API_KEY=\S+", f"JICOO_API_KEY={sandbox.api_key}", snippet)
    snippet = re.sub(r"JICOO_BASE_URL=\S+", f"JICOO_BASE_URL={sandbox.base_url}", snippet)
    kept = [line for line in snippet.splitlines() if not line.startswith(SERVERS)]
    return "set -euo pipefail\n" + "\n".join(kept)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    home = tmp_path / ".dagster_home"  # as `make` leaves it
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return tmp_path


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # The sandbox has no account limit: the default 10 req/s would only make this slow.
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **UNTHROTTLED},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert "Warning" not in output, output[-4000:]
    return output


# Slow tier: a month of extraction, a Dagster run in its own process (about 30 s).
@pytest.mark.slow
@pytest.mark.system_clock("the README's CLI and Dagster snippets extract the system clock's today")
def test_the_readme_snippets_run_as_copied(system_sandbox: SandboxServer, checkout: Path) -> None:
    sandbox = system_sandbox
    (real_api,) = _blocks("bash", "jicoo extract --start")
    _run(["/bin/bash", "-c", _as_user(real_api, sandbox)], checkout)
    store = ParquetStore(str(checkout / "data" / "warehouse"))
    assert store.list_partitions(TABLES["bookings"].spec)

    # What the jicoo/<organization>/warehouse asset does, so the DuckDB line of the Python
    # snippet has a file.
    load_warehouse(str(checkout / "data" / "warehouse.duckdb"), store, tables=["bookings"])
    (python,) = _blocks("python", "import duckdb")
    _run([str(ROOT / ".venv" / "bin" / "python"), "-c", python], checkout)

    (backfill,) = _blocks("bash", "dg launch")
    output = _run(["/bin/bash", "-c", _as_user(backfill, sandbox)], checkout)
    assert "RUN_SUCCESS" in output
    backfilled = ParquetStore(str(checkout / "data" / "warehouse")).list_partitions(
        TABLES["bookings"].spec
    )
    assert dt.date(2026, 10, 1) in backfilled
    assert dt.date(2026, 10, 31) in backfilled


def test_the_readme_change_set_has_the_documented_shape() -> None:
    (example,) = _blocks("csv", "change_id,action")
    # Its dates are examples: read it on the README's reference day, a week before them.
    parsed = parse_changeset(example.encode(), now=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    assert parsed.rejected == []
    assert [c.action.value for c in parsed.changes] == ["reschedule", "cancel"]


def _readme_tables() -> dict[str, list[str]]:
    """The README's table list ("## Tables"): each table's name -> the key columns it names."""
    section = README.split("\n## Tables\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    found: dict[str, list[str]] = {}
    for row in rows:
        table, key = row.split("|")[1:3]
        found[re.findall(r"`(\w+)`", table)[0]] = re.findall(r"`(\w+)`", key)
    return found


def test_the_readme_lists_every_table_with_its_key() -> None:
    # The registry (the built-in tables: the tests register theirs only for a while) and
    # write-back's apply log.
    specs = [*(source.spec for source in TABLES.values()), APPLY_LOG]
    assert _readme_tables() == {spec.name: list(spec.key_columns) for spec in specs}
