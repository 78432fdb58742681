"""Adding a table is one declaration (CONTRIBUTING.md, "Adding a table"): registered, it is in
the CLI's --tables, in the Dagster asset graph with its checks, and extracted by the shared run
loop, with no other file touched; pasted into the catalog, it is a built-in table. Both kinds: a
daily snapshot (user_roles) and a day table made from the bookings feed (booking_hosts)."""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jicoo_connector.cli import EXIT_OK, main
from jicoo_connector.extract import TABLES, extract_range, register_table, unregister_table
from jicoo_connector.extract.catalog import BUILT_IN
from jicoo_connector.extract.sources import DaySource, SnapshotSource, TableSource
from jicoo_connector.quality import check_names
from jicoo_connector.storage import ParquetStore
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import (
    NAMES,
    check_evaluations,
    definitions,
    materializations,
    materialize,
)
from tests.support.sandbox import TEST_RATE_LIMIT, TOKYO, sandbox_settings

TABLE = "user_roles"
HOSTS_TABLE = "booking_hosts"
ROOT = Path(__file__).parents[2]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"


def _guide_block(containing: str) -> str:
    """The one Python block of CONTRIBUTING.md holding ``containing``, as a reader copies it."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]
    (block,) = [block for block in blocks if containing in block]
    return block


def _run_guide(snippet: str, namespace: dict[str, object]) -> None:
    exec(compile(snippet, str(CONTRIBUTING), "exec"), namespace)  # noqa: S102 - our own guide


def _declare(name: str) -> TableSource:
    """Run CONTRIBUTING.md's block that declares ``name``: the tests use the guide's
    declarations, so the guide cannot drift from them."""
    namespace: dict[str, object] = {}
    _run_guide(_guide_block(f"\n{name} = "), namespace)
    source = namespace[name]
    assert isinstance(source, SnapshotSource | DaySource)
    return source


@contextmanager
def _registered(name: str) -> Iterator[TableSource]:
    """``name`` declared, then registered by the guide's own lines: its registration block's
    imports and the ``register_table`` call naming it."""
    source = _declare(name)
    call = f"register_table({name})"
    lines = _guide_block(call).splitlines()
    _run_guide(
        "\n".join([*(line for line in lines if line.startswith("from ")), call]), {name: source}
    )
    assert TABLES[source.table] is source
    try:
        yield source
    finally:
        unregister_table(source.table)
    assert source.table not in TABLES


@pytest.fixture
def user_roles() -> Iterator[TableSource]:
    with _registered("USER_ROLES") as source:
        assert source.table == TABLE
        assert isinstance(source, SnapshotSource)
        yield source


def _roles_in_sandbox(sandbox: SandboxServer) -> dict[str, object]:
    return {str(user["uid"]): user.get("role") for user in sandbox.store.users()}


def _cli_tables(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The words of ``jicoo extract --help`` (its --tables choices among them)."""
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    return capsys.readouterr().out.split()


def _rows(path: Path) -> dict[str, object]:
    read = pq.read_table(path)
    uids, roles = read.column("uid").to_pylist(), read.column("role").to_pylist()
    return {str(uid): role for uid, role in zip(uids, roles, strict=True)}


def test_a_registered_table_is_extracted_by_the_run_loop(
    user_roles: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day = dt.date(2026, 1, 5)  # day tables only: a snapshot is dated today
    (result,) = extract_range(sandbox_settings(sandbox), [TABLE], day, day, str(tmp_path))
    expected = _roles_in_sandbox(sandbox)
    assert result.table == TABLE
    assert result.rows == len(expected) > 0
    assert result.path is not None
    assert _rows(Path(result.path)) == expected
    assert ParquetStore(tmp_path).has_partition(user_roles.spec, result.partition_value)


def test_a_registered_table_is_in_the_cli_tables(
    user_roles: TableSource,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert TABLE in _cli_tables(capsys)
    monkeypatch.setenv("JICOO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", str(TEST_RATE_LIMIT))
    out = tmp_path / "wh"
    assert main(["extract", "--tables", TABLE, "--out", str(out), "--quiet"]) == EXIT_OK
    (written,) = (out / TABLE).rglob("*.parquet")
    assert _rows(written) == _roles_in_sandbox(sandbox)


def test_a_registered_table_is_an_asset_with_its_checks(
    user_roles: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = definitions(sandbox, tmp_path)
    key = NAMES.asset_key(TABLE)
    asset = defs.resolve_assets_def(key)
    assert {check.name for check in asset.check_specs} == set(check_names(user_roles.spec))
    assert check_names(user_roles.spec) == ("key_unique_not_null", "extra_empty")
    result = materialize(defs, [TABLE])
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.asset_key == key
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == len(_roles_in_sandbox(sandbox))
    assert check_evaluations(result) == {
        f"jicoo/test/{TABLE}/key_unique_not_null": True,
        f"jicoo/test/{TABLE}/extra_empty": True,
    }


def test_a_registered_table_is_in_the_code_location_jobs_and_warehouse(
    user_roles: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    defs = definitions(sandbox, tmp_path)
    key = NAMES.asset_key(TABLE)
    snapshots = defs.resolve_job_def(NAMES.job("snapshots")).asset_layer.selected_asset_keys
    assert key in snapshots
    daily = defs.resolve_job_def(NAMES.job("daily_tables")).asset_layer.selected_asset_keys
    assert key not in daily
    graph = defs.resolve_asset_graph()
    assert key in graph.get(NAMES.asset_key("warehouse")).parent_keys


def test_a_table_is_registered_once_and_built_ins_stay() -> None:
    with _registered("USER_ROLES") as source, pytest.raises(ValueError, match="already"):
        register_table(source)
    with pytest.raises(ValueError, match="built in"):
        unregister_table("bookings")


# -- a day table: made from the bookings feed, so it costs no request of its own --------------


@pytest.fixture
def booking_hosts() -> Iterator[TableSource]:
    with _registered("BOOKING_HOSTS") as source:
        assert source.table == HOSTS_TABLE
        assert isinstance(source, DaySource)
        yield source


def _busiest_day(sandbox: SandboxServer) -> tuple[dt.date, Counter[str]]:
    """The Tokyo day with the most bookings, and the number of hosts of each of its bookings."""
    by_day: dict[dt.date, Counter[str]] = {}
    for booking in sandbox.store.all_bookings():
        started = dt.datetime.fromisoformat(str(booking["startedAt"])).astimezone(TOKYO).date()
        hosts = booking.get("hosts") or []
        assert isinstance(hosts, list)
        by_day.setdefault(started, Counter())[str(booking["uid"])] = len(hosts)
    day = max(by_day, key=lambda d: len(by_day[d]))
    return day, by_day[day]


def _listings(sandbox: SandboxServer) -> int:
    return sum(
        1 for e in sandbox.requests() if e["method"] == "GET" and e["path"] == "/v1/bookings"
    )


def test_a_registered_day_table_shares_the_bookings_listing(
    booking_hosts: TableSource, sandbox: SandboxServer, tmp_path: Path
) -> None:
    day, hosts = _busiest_day(sandbox)
    alone = extract_range(sandbox_settings(sandbox), ["bookings"], day, day, str(tmp_path / "a"))
    pages = _listings(sandbox)
    assert pages > 0
    sandbox.clear_requests()
    both = extract_range(
        sandbox_settings(sandbox),
        ["bookings", HOSTS_TABLE],
        day,
        day,
        str(tmp_path / "b"),
        zone=TOKYO.key,
    )
    # The same listing serves both tables: not one bookings request more.
    assert _listings(sandbox) == pages
    (bookings,) = [r for r in both if r.table == "bookings"]
    (written,) = [r for r in both if r.table == HOSTS_TABLE]
    assert bookings.rows == alone[0].rows == len(hosts)
    assert written.rows == sum(hosts.values()) > 0
    assert written.path is not None
    table = pq.read_table(written.path)
    assert Counter(table.column("booking_uid").to_pylist()) == +hosts
    assert written.quality is not None


def test_a_registered_day_table_is_an_asset_fed_by_the_bookings_partition(
    booking_hosts: TableSource,
    sandbox: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert HOSTS_TABLE in _cli_tables(capsys)
    defs = definitions(sandbox, tmp_path)
    key = NAMES.asset_key(HOSTS_TABLE)
    daily = defs.resolve_job_def(NAMES.job("daily_tables")).asset_layer.selected_asset_keys
    assert key in daily
    assert NAMES.asset_key("bookings") in defs.resolve_asset_graph().get(key).parent_keys

    day, hosts = _busiest_day(sandbox)
    result = materialize(defs, ["bookings", HOSTS_TABLE], partition_key=day.isoformat())
    assert result.success
    (event,) = materializations(result, key)
    assert event.metadata["dagster/row_count"].value == sum(hosts.values()) > 0
    assert check_evaluations(result)[f"jicoo/test/{HOSTS_TABLE}/key_unique_not_null"] is True
    # Its step read the bookings partition the bookings step wrote: one listing in the run.
    sandbox_pages = _listings(sandbox)
    sandbox.clear_requests()
    extract_range(sandbox_settings(sandbox), ["bookings"], day, day, str(tmp_path / "alone"))
    assert sandbox_pages == _listings(sandbox)


# -- the same blocks pasted into the catalog: built-in tables ---------------------------------

_BUILT_IN_SCRIPT = """
import datetime as dt, json, sys
import jicoo_connector
from jicoo_connector.errors import ConfigError
from jicoo_connector.extract import TABLES, extract_range, unregister_table
from jicoo_connector.settings import ApiKey, Settings

key, url, root, day = sys.argv[1:5]
refused = []
for name in ("user_roles", "booking_hosts"):
    try:
        unregister_table(name)
    except ConfigError:
        refused.append(name)
settings = Settings(api_key=ApiKey(key), base_url=url, rate_limit=1000, burst=100)
day = dt.date.fromisoformat(day)
results = extract_range(
    settings, ["user_roles", "booking_hosts"], day, day, root, zone="Asia/Tokyo"
)
print(json.dumps({
    "package": jicoo_connector.__file__,
    "tables": list(TABLES),
    "refused": refused,
    "rows": {r.table: r.rows for r in results},
}))
"""


def _paste_into_catalog(package: Path, module: str, name: str) -> None:
    """What the guide says to do for a built-in table: the declaration's block, as it is, as a
    catalog module; its table imported in the catalog's __init__.py and added to BUILT_IN."""
    catalog = package / "extract" / "catalog"
    (catalog / f"{module}.py").write_text(_guide_block(f"\n{name} = "), encoding="utf-8")
    init = catalog / "__init__.py"
    text = init.read_text(encoding="utf-8")
    anchor = "from jicoo_connector.extract.sources import"
    assert anchor in text
    text = text.replace(
        anchor, f"from jicoo_connector.extract.catalog.{module} import {name}\n{anchor}"
    )
    # BUILT_IN closes the module: the new table goes last.
    head, closing, tail = text.rpartition(",\n)\n")
    assert closing
    assert not tail
    init.write_text(f"{head},\n    {name},\n)\n", encoding="utf-8")


def test_the_guides_tables_pasted_into_the_catalog_are_built_in_tables(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "jicoo_connector",
        checkout / "jicoo_connector",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    _paste_into_catalog(checkout / "jicoo_connector", "user_roles", "USER_ROLES")
    _paste_into_catalog(checkout / "jicoo_connector", "booking_hosts", "BOOKING_HOSTS")
    day, hosts = _busiest_day(sandbox)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            "-c",
            _BUILT_IN_SCRIPT,
            sandbox.api_key,
            sandbox.base_url,
            str(tmp_path / "out"),
            day.isoformat(),
        ],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["package"]).is_relative_to(checkout)
    # After the catalog's own tables, in BUILT_IN's order; built in, so they stay registered.
    assert found["tables"] == [*(source.table for source in BUILT_IN), TABLE, HOSTS_TABLE]
    assert found["refused"] == [TABLE, HOSTS_TABLE]
    assert found["rows"] == {
        TABLE: len(_roles_in_sandbox(sandbox)),
        HOSTS_TABLE: sum(hosts.values()),
    }
    assert min(found["rows"].values()) > 0
