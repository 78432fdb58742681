"""The receiver's bounds, each on its own with small limits, over raw loopback sockets: a slow or
silent client is cut at its deadline, an oversized head or too many fields are refused, and
past the connection cap a new sender is still served. (`test_siege.py` puts them together.)"""

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from jicoo_connector.webhooks import ReceiverLimits
from jicoo_sandbox.webhooks import sign
from tests.support.raw_socket import GRACE_S, status_of, until_closed
from tests.support.webhook_receiver import HEADER, NOW, SECRET, TIMEOUT_S, Receiver, event_body

SHORT_S = 0.5
HEAD = b"POST /hooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.fixture
def bounded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    limits: ReceiverLimits = getattr(request, "param", ReceiverLimits())
    running = Receiver(tmp_path / "events.sqlite", SECRET, limits=limits)
    yield running
    running.close()


def _connect(receiver: Receiver) -> socket.socket:
    parts = urlsplit(receiver.url)
    return socket.create_connection((parts.hostname or "", parts.port or 0), timeout=TIMEOUT_S)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GRACE_S
    while not condition():
        assert time.monotonic() < deadline, "the receiver never got there"
        time.sleep(0.01)


def _signed_post(receiver: Receiver) -> httpx.Response:
    body = event_body()
    headers = {HEADER: sign(SECRET, body, NOW)}
    return httpx.post(receiver.url, content=body, headers=headers, timeout=TIMEOUT_S)


@pytest.mark.parametrize("bounded", [ReceiverLimits(header_timeout_s=SHORT_S)], indirect=True)
def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    bounded: Receiver,
) -> None:
    with _connect(bounded) as silent:
        received, after = until_closed(silent, SHORT_S + GRACE_S)
    assert received == b""
    assert SHORT_S * 0.9 <= after < SHORT_S + GRACE_S


@pytest.mark.parametrize("bounded", [ReceiverLimits(header_timeout_s=SHORT_S)], indirect=True)
def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout(bounded: Receiver) -> None:
    """Every byte used to put the deadline off again (uvicorn's keep-alive timer)."""
    started = time.monotonic()
    with _connect(bounded) as slow:
        slow.sendall(HEAD)
        try:
            while time.monotonic() - started < SHORT_S + GRACE_S:
                slow.sendall(b"X-Slow: a\r\n"[:1])
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _, after = until_closed(slow, GRACE_S)
    assert time.monotonic() - started < SHORT_S + GRACE_S + after
    assert after < GRACE_S


@pytest.mark.parametrize("bounded", [ReceiverLimits(body_timeout_s=SHORT_S)], indirect=True)
def test_a_body_that_trickles_gets_408_and_the_connection_closes(bounded: Receiver) -> None:
    with _connect(bounded) as slow:
        slow.sendall(HEAD + b"Content-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        received = b""
        try:
            while b"\r\n\r\n" not in received and time.monotonic() - started < SHORT_S + GRACE_S:
                slow.sendall(b" ")
                slow.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    received += slow.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        rest, _ = until_closed(slow, GRACE_S)
    assert status_of(received + rest) == 408
    assert b"connection: close" in (received + rest).lower()
    assert bounded.rows() == []


def test_a_head_over_the_byte_cap_is_refused_and_closed(bounded: Receiver) -> None:
    cap = ReceiverLimits().max_header_bytes
    with _connect(bounded) as big:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            big.sendall(HEAD + b"X-Big: " + b"a" * (cap * 4) + b"\r\n\r\n")
        received, after = until_closed(big, GRACE_S + 2)
    # 400 from h11 when the head outgrew its buffer while arriving, 431 from the app when it
    # came whole in one read: refused either way, and the connection closed.
    assert status_of(received) in (400, 431)
    assert after < GRACE_S + 2


def test_too_many_header_fields_get_431(bounded: Receiver) -> None:
    fields = {f"x-field-{n}": "1" for n in range(ReceiverLimits().max_headers + 1)}
    body = event_body()
    headers = {HEADER: sign(SECRET, body, NOW), **fields}
    response = httpx.post(bounded.url, content=body, headers=headers, timeout=TIMEOUT_S)
    assert response.status_code == 431
    assert bounded.rows() == []


@pytest.mark.parametrize("bounded", [ReceiverLimits(max_body_bytes=1000)], indirect=True)
def test_the_body_cap_is_a_setting(bounded: Receiver) -> None:
    body = b"{" + b" " * 1000 + b"}"
    response = httpx.post(
        bounded.url, content=body, headers={HEADER: sign(SECRET, body, NOW)}, timeout=TIMEOUT_S
    )
    assert response.status_code == 413


@pytest.mark.parametrize("bounded", [ReceiverLimits(keep_alive_s=1)], indirect=True)
def test_an_idle_keep_alive_connection_is_closed(bounded: Receiver) -> None:
    body = event_body()
    signed = HEAD + f"{HEADER}: {sign(SECRET, body, NOW)}\r\n".encode()
    with _connect(bounded) as idle:
        idle.sendall(signed + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received, after = until_closed(idle, 1 + GRACE_S)
    assert status_of(received) == 200
    assert after < 1 + GRACE_S


CAP = 8


@pytest.mark.parametrize(
    "bounded", [ReceiverLimits(max_connections=CAP, header_timeout_s=60)], indirect=True
)
def test_past_the_connection_cap_the_oldest_slow_connection_makes_room(bounded: Receiver) -> None:
    silent = []
    try:
        for _ in range(CAP):  # one at a time: their order is the order they were accepted in
            silent.append(_connect(bounded))
            _wait_for(lambda: len(bounded.guard.open) == len(silent))
        assert _signed_post(bounded).status_code == 200
        oldest, _ = until_closed(silent[0], GRACE_S)
        assert oldest == b""
        assert bounded.guard.shed == 1
        for later in silent[1:]:  # the valid sender's one connection shed only the oldest
            later.settimeout(0.05)
            with pytest.raises(TimeoutError):
                later.recv(1)
    finally:
        for sock in silent:
            sock.close()
