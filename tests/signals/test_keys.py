"""A key the API refuses is a configuration error, 401 or 403 alike: never retried, nothing
written, one line naming JICOO_API_KEY, exit 2. A key that reads bookings but not one optional
table skips that table, says so, exits 1 and keeps the table's earlier partitions."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from jicoo_sandbox.config import Clock, SandboxConfig
from jicoo_sandbox.server import SandboxServer
from tests.signals.support import environment, one_line, run
from tests.support.sandbox import LIMITED_KEY, SANDBOX_KEY, SANDBOX_SEED
from tests.support.writeback_data import HEADER, all_posts, future_open_bookings

WRONG_KEY = "sk_live_not_this_one"
NO_BOOKINGS_KEY = "sk_test_no_bookings"
REFUSED = re.compile(
    r"jicoo: the API refused the key \(GET /v1/[a-z_/]+(?: page 1)?: HTTP (\d+): a valid "
    r"X-Jicoo-Api-Key header is required\): check the API key \(JICOO_API_KEY\); "
    r"0 of (\d+) partitions written, the others keep their previous data"
)


@pytest.fixture(scope="module")
def sandbox_401(clock: Clock) -> Iterator[SandboxServer]:
    """A sandbox answering a wrong key with 401 (the shared one answers 403, as the real API
    did), and refusing one key the bookings listing only."""
    config = SandboxConfig(
        seed=SANDBOX_SEED,
        bookings=200,
        clock=clock,
        api_keys=(SANDBOX_KEY,),
        auth_failure_status=401,
        denied={NO_BOOKINGS_KEY: frozenset({"listBookings"})},
    )
    with SandboxServer(config) as server:
        yield server


@pytest.mark.parametrize("status", [403, 401])
def test_a_key_that_reads_nothing_fails_the_extract_with_one_line_and_writes_nothing(
    status: int,
    sandbox: SandboxServer,
    sandbox_401: SandboxServer,
    tmp_path: Path,
) -> None:
    server = sandbox if status == 403 else sandbox_401
    server.clear_requests()
    env = environment(server, tmp_path, JICOO_API_KEY=WRONG_KEY)
    done = run("extract", "--out", str(tmp_path / "wh"), "--quiet", env=env, cwd=tmp_path)

    assert done.returncode == 2
    line = REFUSED.fullmatch(one_line(done.stderr))
    assert line is not None, done.stderr
    assert line.groups() == (str(status), "7")
    assert WRONG_KEY not in done.stdout + done.stderr
    assert not (tmp_path / "wh").exists() or not list((tmp_path / "wh").rglob("*.parquet"))
    # Never retried: no request went out twice.
    asked = [(r["method"], r["path"], r["query"]) for r in server.requests()]
    assert asked
    assert len(asked) == len(set(asked))
    assert {r["status"] for r in server.requests()} == {status}


def test_a_403_on_bookings_fails_the_extract_of_the_day_tables(
    sandbox_401: SandboxServer, tmp_path: Path
) -> None:
    env = environment(sandbox_401, tmp_path, JICOO_API_KEY=NO_BOOKINGS_KEY)
    day = str(sandbox_401.store.anchor)
    args = ["extract", "--tables", "bookings", "booking_contacts", "--start", day]
    done = run(*args, "--out", str(tmp_path / "wh"), "--quiet", env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "jicoo: the API refused the key (GET /v1/bookings: HTTP 403: this API key may "
        "not call listBookings): check the API key (JICOO_API_KEY); 0 of 2 partitions "
        "written, the others keep their previous data"
    )


def test_a_key_that_may_not_read_one_table_skips_it_and_keeps_its_earlier_partitions(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    out = tmp_path / "wh"
    args = ["extract", "--tables", "users", "event_types", "--out", str(out), "--quiet"]
    full = run(*args, env=environment(sandbox, tmp_path), cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    (earlier,) = list((out / "event_types").rglob("data.parquet"))
    kept = (earlier.read_bytes(), earlier.stat().st_mtime_ns)

    limited = environment(sandbox, tmp_path, JICOO_API_KEY=LIMITED_KEY)
    done = run(*args, env=limited, cwd=tmp_path)

    assert done.returncode == 1
    assert one_line(done.stderr) == (
        "jicoo extract: 1 of 2 tables skipped: the API key may not read them "
        "(leave them out with --tables)"
    )
    summary = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert summary["event_types"].split()[1] == "skipped"
    assert "403 on /v1/event_types" in summary["event_types"]
    assert "earlier partitions kept" in summary["event_types"]
    assert (earlier.read_bytes(), earlier.stat().st_mtime_ns) == kept  # not emptied
    assert int(summary["users"].split()[1]) == len(sandbox.store.users())


@pytest.mark.parametrize("status", [403, 401])
def test_apply_with_a_key_the_api_refuses_sends_nothing_and_exits_2(
    status: int, sandbox: SandboxServer, sandbox_401: SandboxServer, tmp_path: Path
) -> None:
    # Nothing is planned with a refused key, so the day of either sandbox's clock is no matter.
    server = sandbox if status == 403 else sandbox_401
    uids = [b["uid"] for b in future_open_bookings(server)[:3]]
    changes = tmp_path / "refused.csv"
    changes.write_text(HEADER + "\n" + "".join(f",cancel,{u},,,x\n" for u in uids), "utf-8")
    env = environment(server, tmp_path, JICOO_API_KEY=WRONG_KEY)
    args = ["apply", str(changes), "--ledger", str(tmp_path / "ledger.sqlite")]
    done = run(*args, "--apply-log", str(tmp_path / "log"), env=env, cwd=tmp_path)

    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "jicoo: apply: the API refused JICOO_API_KEY (HTTP 401/403); nothing was sent"
    )
    assert "nothing was sent" in done.stdout
    assert all_posts(server) == 0
