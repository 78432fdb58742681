"""The server runners: in a thread on a free port, side by side, and as a child process."""

import datetime as dt
import json
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

import jicoo_sandbox as sandbox_package
from jicoo_sandbox import SandboxConfig, SandboxProcess, SandboxServer
from jicoo_sandbox.config import Clock
from jicoo_sandbox.faults import FaultProfileError
from jicoo_sandbox.server import TransportHttpToolsProtocol

SMALL = 50
TIMEOUT_S = 10.0


def first_uids(base_url: str, key: str) -> list[str]:
    response = httpx.get(
        f"{base_url}/v1/bookings",
        headers={"X-Jicoo-Api-Key": key},
        params={"perPage": 5},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    return [b["uid"] for b in response.json()["data"]]


def sandbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jicoo-sandbox" and t.is_alive()]


def test_public_interface_is_complete_and_sorted() -> None:
    assert sandbox_package.__all__ == sorted(sandbox_package.__all__)
    for name in sandbox_package.__all__:
        assert getattr(sandbox_package, name) is not None


def test_session_sandbox_listens_on_a_real_port(sandbox: SandboxServer) -> None:
    assert sandbox.base_url.startswith("http://127.0.0.1:")
    assert not sandbox.base_url.endswith(":0")
    assert sandbox.api_key == "sk_test_sandbox"
    assert len(first_uids(sandbox.base_url, sandbox.api_key)) == 5


def test_two_servers_side_by_side_then_stop_cleanly(clock: Clock) -> None:
    before = len(sandbox_threads())
    one = SandboxServer(SandboxConfig(seed=1, bookings=SMALL, clock=clock))
    two = SandboxServer(
        SandboxConfig(seed=2, bookings=SMALL, api_keys=("sk_test_two",), clock=clock)
    )
    with one, two:
        assert one.base_url != two.base_url
        assert first_uids(one.base_url, one.api_key) != first_uids(two.base_url, two.api_key)
        assert len(sandbox_threads()) == before + 2
        url = one.base_url
    assert len(sandbox_threads()) == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/bookings", timeout=TIMEOUT_S)
    with pytest.raises(RuntimeError, match="not running"):
        _ = one.base_url


def test_reset_restores_data_faults_and_log(sandbox: SandboxServer) -> None:
    headers = {"X-Jicoo-Api-Key": sandbox.api_key}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=TIMEOUT_S) as client:
        total = client.get("/v1/bookings").json()["totalCount"]
        sandbox.set_faults({"rules": [{"kind": "drift", "insert": 3, "times": 1}]})
        client.get("/v1/bookings")
        assert client.get("/v1/bookings").json()["totalCount"] == total + 3
        sandbox.set_faults({"rules": [{"kind": "status"}]})
        sandbox.reset()
        assert sandbox.requests() == []
        assert client.get("/v1/bookings").json()["totalCount"] == total


def test_a_bad_fault_profile_stops_the_start(clock: Clock) -> None:
    faults = {"rules": [{"kind": "explode"}]}
    with pytest.raises(FaultProfileError, match=r"rules\[0\]\.kind"):
        SandboxServer(SandboxConfig(bookings=SMALL, faults=faults, clock=clock))


def test_start_profile_from_config_is_active(clock: Clock) -> None:
    faults = {"rules": [{"kind": "status", "status": 504}]}
    config = SandboxConfig(bookings=SMALL, faults=faults, clock=clock)
    with SandboxServer(config) as server:
        assert first_status(server) == 504
        server.reset()  # back to the start profile, not to none
        assert first_status(server) == 504
        server.clear_faults()
        assert first_status(server) == 200


def first_status(server: SandboxServer) -> int:
    headers = {"X-Jicoo-Api-Key": server.api_key}
    return httpx.get(
        f"{server.base_url}/v1/bookings", headers=headers, timeout=TIMEOUT_S
    ).status_code


def test_a_taken_port_fails_loudly(sandbox: SandboxServer) -> None:
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="could not start"):
        SandboxServer(SandboxConfig(bookings=SMALL, clock=sandbox.config.clock), port=port).start()


def test_protocol_class_is_uvicorns_httptools() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(TransportHttpToolsProtocol, HttpToolsProtocol)


def test_process_starts_announces_and_stops() -> None:
    with SandboxProcess(bookings=SMALL, seed=3, anchor_date="2026-11-20") as process:
        url = process.base_url
        assert url.startswith("http://127.0.0.1:")
        uids = first_uids(url, process.api_key)
        with SandboxServer(
            SandboxConfig(seed=3, bookings=SMALL, anchor_date=dt.date(2026, 11, 20))
        ) as local:
            # Same seed and anchor in two processes: the same data.
            assert first_uids(local.base_url, local.api_key) == uids
        pid = process.pid
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/bookings", timeout=TIMEOUT_S)
    with pytest.raises(RuntimeError, match="not running"):
        _ = process.pid
    assert pid > 0


def test_process_that_cannot_start_fails_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "faults.json"
    bad.write_text(json.dumps({"rules": [{"kind": "explode"}]}), encoding="utf-8")
    process = SandboxProcess(bookings=SMALL, faults=bad)
    try:
        with pytest.raises(RuntimeError, match="did not announce itself"):
            process.start()
    finally:
        process.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = process.base_url


def test_a_client_dying_mid_body_is_neither_applied_nor_an_error(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    uid = str(sandbox.store.all_bookings()[0]["uid"])
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/bookings/{uid}/cancel HTTP/1.1\r\nHost: {host}\r\n"
        f"X-Jicoo-Api-Key: {sandbox.api_key}\r\nContent-Type: application/json\r\n"
        'Content-Length: 100\r\n\r\n{"cancelReason":'
    )
    with caplog.at_level(logging.ERROR), socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode())
    time.sleep(0.3)  # let the server notice the hang-up
    assert sandbox.store.journal() == []
    assert sandbox.store.get_booking(uid) == sandbox.store.all_bookings()[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
