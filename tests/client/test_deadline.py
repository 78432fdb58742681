"""Bounded time against a server that trickles its answer (one byte every half second): each
request ends at the request deadline and is resent at most once, so ``jicoo extract`` fails
with a clear message after about two deadlines (2 x 60 s by default: under 3 minutes)."""

import collections
import time

import pytest

from jicoo_connector.cli import main as cli_main
from jicoo_sandbox.server import SandboxServer
from tests.support.sandbox import SANDBOX_KEY

DEADLINE_S = 1.5
TRICKLE = {"kind": "trickle", "chunk_bytes": 1, "interval_ms": 500}


def test_extract_against_a_trickling_server_fails_within_two_deadlines(
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    sandbox.set_faults({"rules": [TRICKLE]})
    sandbox.clear_requests()
    monkeypatch.setenv("JICOO_API_KEY", SANDBOX_KEY)
    monkeypatch.setenv("JICOO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("JICOO_REQUEST_DEADLINE", str(DEADLINE_S))
    argv = ["extract", "--tables", "bookings", "--start", "2026-03-02", "--quiet"]
    started = time.monotonic()
    code = cli_main([*argv, "--out", f"{tmp_path}/warehouse"])
    elapsed = time.monotonic() - started
    assert code != 0
    message = capsys.readouterr().err
    assert f"no complete answer within the request deadline ({DEADLINE_S:g} s)" in message
    # Two deadlines plus at most one backoff (0.5 s) and the start-up: not seven deadlines.
    assert 2 * DEADLINE_S <= elapsed < 2 * DEADLINE_S + 3.0
    sent = collections.Counter(
        (entry["method"], entry["path"], entry["query"])
        for entry in sandbox.requests()
        if not str(entry["path"]).startswith("/_sandbox")
    )
    assert sent
    assert max(sent.values()) == 2  # each request: the first attempt and one retry
