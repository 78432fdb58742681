"""No password from a generated set of 200 appears in any output, log, file or Dagster storage
after `jicoo load`, `jicoo apply` and a Dagster run with it.

Each password holds every kind of reserved character and a token of ten capital letters that
nothing else here spells, and goes into the warehouse and ledger URL (a real PostgreSQL server)
one of four ways: percent-encoded or raw, in the userinfo or as ``?password=``. The URLs reach
the CLI and the code location through their variables (``dg.EnvVar``), as the README says.
"""

import contextlib
import random
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import dagster as dg
import pytest

from jicoo_connector.cli import main
from jicoo_connector.extract import extract_range
from jicoo_connector.settings import ApiKey, Settings
from jicoo_sandbox.server import SandboxServer
from tests.dagster.support import NAMES, definitions, materialize
from tests.support.sandbox import TEST_RATE_LIMIT, tokyo_today

PASSWORDS = 200
RESERVED = ":/?#[]@!$&'()*+,;=% \"<>\\^`{|}~"
SPELLINGS = ("userinfo, encoded", "userinfo, raw", "query, encoded", "query, raw")


def _passwords() -> Iterator[tuple[str, str]]:
    """(password, its token): seeded, so a failure names a password that can be made again."""
    rng = random.Random(26)
    alphabet = RESERVED + string.ascii_lowercase + string.digits + "éあ"
    for _ in range(PASSWORDS):
        token = "".join(rng.choice(string.ascii_uppercase) for _ in range(10))
        left, right = (
            "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8))) for _ in "lr"
        )
        yield f"{left}{token}{right}", token


def _url(base: str, password: str, spelling: str) -> str:
    parts = urlsplit(base)
    value = quote(password, safe="") if "encoded" in spelling else password
    if spelling.startswith("userinfo"):
        return base.replace(f"{parts.username}@", f"{parts.username}:{value}@", 1)
    return f"{base}?sslmode=disable&password={value}"


def _shown(text: str, password: str, token: str) -> bool:
    spellings = {password, quote(password, safe=""), quote(password), quote_plus(password), token}
    return any(spelling in text for spelling in spellings)


def _files(root: Path) -> Iterator[tuple[Path, str]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _dagster_instance() -> Iterator[tuple[dg.DagsterInstance, Path]]:
    """A persistent instance whose storage the test reads back: every run's events in one
    SQLite file (the default makes and migrates one per run), on tmpfs where there is one
    (200 runs of SQLite commits on a busy disk take minutes; the bytes are the same)."""
    memory = Path("/dev/shm")  # noqa: S108 - a private directory is made inside it
    with tempfile.TemporaryDirectory(dir=memory if memory.is_dir() else None) as temp:
        home = Path(temp)
        events = {"module": "dagster._core.storage.event_log",
                  "class": "ConsolidatedSqliteEventLogStorage",
                  "config": {"base_dir": str(home / "history")}}  # fmt: skip
        with dg.instance_for_test(temp_dir=temp, overrides={"event_log_storage": events}) as inst:
            yield inst, home


def _warehouse_changes_and_definitions(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dg.Definitions, Path]:
    """A warehouse root with today's users, a change set (one cancel of an unknown booking), the
    CLI's variables, and a code location whose warehouse and ledger URLs are read from
    JICOO_WAREHOUSE_URL and JICOO_LEDGER_URL: its definitions and the change set's path."""
    root, work = tmp_path / "warehouse", tmp_path / "work"
    settings = Settings(
        api_key=ApiKey(sandbox.api_key), base_url=sandbox.base_url, rate_limit=TEST_RATE_LIMIT
    )
    today = tokyo_today(sandbox)
    extract_range(settings, ["users"], today, today, str(root))
    work.mkdir()
    changes = work / "changes.csv"
    changes.write_text(
        "action,booking_uid,new_started_at,time_zone,cancel_reason\ncancel,nosuchbooking1,,,x\n"
    )
    monkeypatch.setenv("JICOO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_RATE_LIMIT", "500")
    monkeypatch.setenv("JICOO_WAREHOUSE_ROOT", str(root))
    defs = definitions(
        sandbox,
        work / "organization",
        warehouse_root=str(root),
        warehouse_url=dg.EnvVar("JICOO_WAREHOUSE_URL"),
        ledger_url=dg.EnvVar("JICOO_LEDGER_URL"),
        apply_log_root=str(work / "apply_log"),
    )
    return defs, changes


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.system_clock(
    "jicoo apply and the write-back job decide what is in the past by the system clock"
)
def test_no_password_of_200_shows_after_load_apply_and_a_dagster_run(
    system_sandbox: SandboxServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = system_sandbox
    work = tmp_path / "work"
    defs, changes = _warehouse_changes_and_definitions(sandbox, tmp_path, monkeypatch)
    run_config = {"ops": {NAMES.op("apply_log"): {"config": {"path": str(changes)}}}}
    caplog.set_level("DEBUG")
    seen: list[str] = []
    codes: set[tuple[str, int, int, bool]] = set()
    passwords = list(_passwords())
    with _dagster_instance() as (instance, home):
        for n, (password, _) in enumerate(passwords):
            spelling = SPELLINGS[n % len(SPELLINGS)]
            url = _url(postgres_url, password, spelling)
            monkeypatch.setenv("JICOO_WAREHOUSE_URL", url)
            monkeypatch.setenv("JICOO_LEDGER_URL", url)
            loaded = main(["load", "--tables", "users"])
            applied = main(["apply", str(changes), "--apply-log", str(work / "apply_log")])
            run = materialize(
                defs,
                ["warehouse", "apply_log"],
                run_config=run_config,
                instance=instance,
                raise_on_error=False,
            )
            codes.add((spelling, loaded, applied, run.success))
            out, err = capfd.readouterr()
            seen += [out, err, " ".join(str(event) for event in run.all_events)]
        seen.append(caplog.text)
        files = [*_files(tmp_path), *_files(home)]
    for password, token in passwords:
        assert not [text for text in seen if _shown(text, password, token)], password
        assert not [path for path, text in files if _shown(text, password, token)], password
    # Every spelling was used, and the encoded ones really loaded and applied.
    assert {spelling for spelling, *_ in codes} == set(SPELLINGS)
    assert ("userinfo, encoded", 0, 1, True) in codes
    assert ("query, encoded", 0, 1, True) in codes
