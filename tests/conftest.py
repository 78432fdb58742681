"""Shared fixtures: one sandbox server per session, reset after every test that used it.

The shared sandbox runs on ``TEST_CLOCK`` and is anchored on its day (``anchor_date=None``).
``JICOO_TEST_TODAY`` (``2027-01-31``, or an instant such as ``2027-01-31T23:30:00Z``) starts
that clock on another day (at ``SHIFTED_TIME`` UTC for a bare date); unset, it is the system
clock. Tests read "now" from ``sandbox.config.clock`` (or the ``clock`` fixture) and pass it to
the library (``now=``), never from the system clock: ``make test-dates`` runs them on several
days. Tests that need byte-identical data start their own store/server with a fixed anchor.
"""

import datetime as dt
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings

from jicoo_connector._compat import parse_datetime
from jicoo_connector.client import reset_shared_limiters
from jicoo_sandbox.config import Clock, SandboxConfig, clock_from, system_clock
from jicoo_sandbox.server import SandboxServer
from tests.support.capture_server import CaptureServer
from tests.support.postgres_server import PostgresServer
from tests.support.repo_data_guard import REPO_DATA, OpenGuard, session_paths
from tests.support.sandbox import LIMITED_KEY, SANDBOX_BOOKINGS, SANDBOX_KEY, SANDBOX_SEED
from tests.support.webhook_receiver import OLD_SECRET, SECRET, Receiver

# Hypothesis's per-example deadline (200 ms) timed the machine, not the code: pure functions
# failed it at load 15. Speed targets live in benchmarks/.
settings.register_profile("jicoo", deadline=None)
settings.load_profile("jicoo")

# A suite started as a background job of a script (nohup, `cmd &`, some CI runners) inherits
# SIGINT ignored, and so would every command it starts: the interrupt tests' Ctrl-C would then
# do nothing. Their children get Ctrl-C as a program started from a terminal does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TEST_TODAY_ENV = "JICOO_TEST_TODAY"
# The mark of a test that cannot run on another day; its argument says why.
SYSTEM_CLOCK_MARK = "system_clock"
# 03:00 UTC is noon in Tokyo: the seeded working day is half past, half ahead.
SHIFTED_TIME = dt.time(3, 0, tzinfo=dt.timezone.utc)


def _test_clock() -> Clock:
    raw = os.environ.get(TEST_TODAY_ENV, "").strip()
    if not raw:
        return system_clock
    try:
        if "T" in raw:
            start = parse_datetime(raw)
            if start.tzinfo is None:
                raise ValueError("an instant needs a time zone (Z or an offset)")
        else:
            start = dt.datetime.combine(dt.date.fromisoformat(raw), SHIFTED_TIME)
    except ValueError as exc:
        raise pytest.UsageError(
            f"{TEST_TODAY_ENV}={raw!r}: expected a date (2027-01-31) or an instant "
            f"(2027-01-31T23:30:00Z): {exc}"
        ) from exc
    return clock_from(start)


TEST_CLOCK: Clock = _test_clock()


def sandbox_config() -> SandboxConfig:
    return SandboxConfig(
        seed=SANDBOX_SEED,
        bookings=SANDBOX_BOOKINGS,
        anchor_date=None,
        clock=TEST_CLOCK,
        api_keys=(SANDBOX_KEY,),
        denied={LIMITED_KEY: frozenset({"listEventTypes"})},
    )


def pytest_report_header() -> str:
    return f"sandbox clock: {TEST_CLOCK().isoformat(timespec='seconds')} ({TEST_TODAY_ENV})"


# One per process (audit hooks stay for the process's life); armed for the session below.
DATA_GUARD = OpenGuard(REPO_DATA)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def _repo_data_untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the checkout's data/: every default path under it points at the
    session's own folder (child processes inherit the variables), nothing under it is opened
    by this process, and its tree ends as it began (writes by child processes included)."""
    before = _tree(REPO_DATA)
    with pytest.MonkeyPatch.context() as env, DATA_GUARD.watching() as touched:
        for name, path in session_paths(tmp_path_factory.mktemp("user-data")).items():
            env.setenv(name, path)
        yield
    assert touched == [], f"the suite opened paths under {REPO_DATA}: {touched[:10]}"
    after = _tree(REPO_DATA)
    assert after == before, f"the suite wrote into {REPO_DATA}: {sorted(set(after) ^ set(before))}"


@pytest.fixture(scope="session")
def clock() -> Clock:
    """The clock of the shared sandbox: "now" for every test that needs one."""
    return TEST_CLOCK


def _started(config: SandboxConfig) -> SandboxServer:
    server = SandboxServer(config)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any start failure must stop the suite, not skip
        pytest.fail(f"the Jicoo sandbox could not start on 127.0.0.1: {exc!r}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """The session's sandbox server; see ``_reset_sandbox`` for isolation between tests."""
    server = _started(sandbox_config())
    yield server
    server.stop()


def system_clock_reason(item: pytest.Item) -> str | None:
    """Why a test runs on the system clock (its ``system_clock`` mark), if it says so."""
    mark = item.get_closest_marker(SYSTEM_CLOCK_MARK)
    reason = mark.args[0] if mark is not None and mark.args else None
    if not isinstance(reason, str) or not reason.strip():
        return None
    return reason.strip()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the system clock says why, in its mark: it is the exception, listed in
    CONTRIBUTING.md, and ``make test-dates`` cannot move its day."""
    unexplained = [
        item.nodeid
        for item in items
        if "system_sandbox" in item.fixturenames and system_clock_reason(item) is None
    ]
    if unexplained:
        raise pytest.UsageError(
            "these tests use system_sandbox without saying why in "
            f"@pytest.mark.{SYSTEM_CLOCK_MARK}('the reason'): {', '.join(unexplained)}"
        )


@pytest.fixture(scope="session")
def system_sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """A sandbox on the system clock, for tests of code that reads the system clock itself
    (the CLI's apply, the Dagster jobs and schedules): the shared one unless
    ``JICOO_TEST_TODAY`` moved it. Such a test carries ``@pytest.mark.system_clock("why")``."""
    if TEST_CLOCK is system_clock:
        yield request.getfixturevalue("sandbox")
        return
    server = _started(replace(sandbox_config(), clock=system_clock))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _dagster_on_the_test_day(request: pytest.FixtureRequest) -> Iterator[None]:
    """Dagster's daily partitions end JICOO_FUTURE_DAYS after its "now": on a shifted day its
    partition loading takes the test clock too (Dagster's ``partition_loading_context``), so a
    test materializes and senses partitions of the sandbox's days in process. A test on the
    system clock keeps Dagster's own."""
    if TEST_CLOCK is system_clock or system_clock_reason(request.node) is not None:
        yield
        return
    import dagster as dg  # here: only a shifted session needs it before a test does

    with dg.partition_loading_context(effective_dt=TEST_CLOCK()):
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use); see ``postgres_url``."""
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any start failure must stop the suite, not skip
        server.stop()
        pytest.fail(f"PostgreSQL could not start on 127.0.0.1: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A new, empty database on the session's server, for one test."""
    return postgres.create_database()


LEDGER_BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=LEDGER_BACKENDS)
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's write-back ledger lives, once per backend: an SQLite file, then a
    fresh PostgreSQL database (``postgresql://`` URL)."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(autouse=True)
def _no_account_limiter_left_over() -> Iterator[None]:
    """Each test starts with no account limiter, as a new process does: ``shared_limiter``
    keeps the first caller's rate per base URL and key for the whole process, so a test that
    ran the CLI at the default 10 requests/s slowed every later test on the same sandbox
    (which tests came first depended on the order, and under pytest-xdist on the worker)."""
    yield
    reset_shared_limiters()


@pytest.fixture(autouse=True)
def _reset_sandbox(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used a sandbox: seeded data, empty journal, no faults, empty log."""
    yield
    used = {
        id(server): server
        for name in ("sandbox", "system_sandbox")
        if name in request.fixturenames
        for server in [request.getfixturevalue(name)]
    }
    for server in used.values():
        server.reset()


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    server = CaptureServer()
    yield server
    server.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A webhook receiver on a loopback port, pinned clock, current and previous secret."""
    running = Receiver(tmp_path / "events.sqlite", f"{SECRET}, {OLD_SECRET}")
    yield running
    running.close()
