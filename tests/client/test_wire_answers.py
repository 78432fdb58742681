"""How the client reads answers (httpx under HttpCore) from scripted raw servers: chunked and
close-delimited bodies, content codings, bombs, broken heads, timeouts, trailers, stray bytes.
Regression tests kept from the hand-written layer httpx replaced.
"""

import asyncio
import gzip
import itertools
import time
import tracemalloc
import zlib

import pytest

from jicoo_connector.client import AsyncJicooClient, RateLimiter
from jicoo_connector.client._http import HttpCore
from jicoo_connector.client._report import FetchReport
from jicoo_connector.errors import InDoubtError, ProtocolError, TransportError
from jicoo_connector.settings import ApiKey, Settings
from tests.client.wire import (
    BOOKING,
    KEY,
    UNTHROTTLED,
    Answer,
    Serve,
    always,
    bookings,
    response,
    run,
)

# -- framing and decoding ------------------------------------------------------------------------


def chunked(body: bytes, size: int) -> list[bytes]:
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        pieces.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    pieces.append(b"0\r\n\r\n")
    return pieces


def test_chunked_answers_are_read_and_the_connection_kept(
    serve: Serve,
) -> None:
    server = serve(always(*chunked(BOOKING, 7), pause_s=0.002))
    assert run(server.base_url, lambda client: bookings(client, 3)) == ["b1"] * 3
    assert server.connections == 1


def test_a_body_delimited_by_the_close_is_complete(serve: Serve) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
    server = serve(always(head, BOOKING[:10], BOOKING[10:], then="close", pause_s=0.01))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2
    assert server.connections == 2


def test_a_chunked_stream_cut_short_is_truncated_and_retried(
    serve: Serve,
) -> None:
    pieces = chunked(BOOKING, 10)

    def answer(index: int, head: bytes) -> Answer:
        if index == 0:
            return Answer(pieces[:2], "close")
        return Answer(pieces)

    server = serve(answer)

    async def get(client: AsyncJicooClient) -> tuple[object, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries

    assert run(server.base_url, get, max_retries=1) == ("b1", 1)
    assert server.connections == 2
    always_cut = serve(always(*pieces[:2], then="close"))
    with pytest.raises(ProtocolError, match="body cut short"):
        run(always_cut.base_url, lambda client: client.get_booking("b1"))


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(BOOKING)),
        ("deflate", zlib.compress(BOOKING)),
        ("deflate", zlib.compress(BOOKING)[2:-4]),  # raw deflate, as some servers send it
        ("identity", BOOKING),
    ],
    ids=["gzip", "deflate", "raw-deflate", "identity"],
)
def test_encoded_bodies_are_decoded(serve: Serve, coding: str, encoded: bytes) -> None:
    server = serve(always(response(encoded, headers=(f"Content-Encoding: {coding}",))))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2
    assert server.connections == 1


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", b"\x1f\x8b\x08\x00not gzip at all"),
        ("gzip", gzip.compress(BOOKING)[:-12]),  # the stream stops before its end
        ("br", BOOKING),
    ],
    ids=["garbage", "cut-stream", "unknown-coding"],
)
def test_undecodable_bodies_are_refused_not_retried(
    serve: Serve, coding: str, encoded: bytes
) -> None:
    server = serve(always(response(encoded, headers=(f"Content-Encoding: {coding}",))))
    with pytest.raises(ProtocolError, match="undecodable body"):
        run(server.base_url, lambda client: client.get_booking("b1"), max_retries=3)
    assert len(server.heads) == 1


def test_an_undecodable_error_body_still_counts_as_its_status(
    serve: Serve,
) -> None:
    """Error bodies are read only for their message: the 503 stays a retryable 503."""
    broken = response(
        b"\x1f\x8b\x08\x00broken",
        status="503 Service Unavailable",
        headers=("Content-Encoding: gzip",),
    )
    server = serve(lambda index, head: Answer([broken if index == 0 else response()]))

    async def get(client: AsyncJicooClient) -> tuple[object, int, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries, client.report.server_errors

    assert run(server.base_url, get, max_retries=1) == ("b1", 1, 1)
    assert len(server.heads) == 2


def gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join([*parts, compressor.flush()])


def test_a_gzip_bomb_stops_at_the_cap_with_memory_bounded(
    serve: Serve,
) -> None:
    cap = 1_000_000
    bomb = gzip_bomb(256 * 1024 * 1024)  # ~250 KB on the wire, 256 MiB inflated
    server = serve(always(response(bomb, headers=("Content-Encoding: gzip",))))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=f"larger than {cap} bytes"):
            run(server.base_url, lambda client: client.get_booking("b1"), max_response_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Inflating one whole 64 KiB read of this stream would take ~64 MiB on its own.
    assert peak < 8 * cap


# -- failures ------------------------------------------------------------------------------------


def test_a_silent_server_hits_the_read_timeout(serve: Serve) -> None:
    server = serve(always(then="hold"))
    started = time.monotonic()
    with pytest.raises(TransportError, match="read timed out"):
        run(server.base_url, lambda client: client.get_booking("b1"), read_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0


def test_a_trickle_resets_the_read_timeout(serve: Serve) -> None:
    """Read timeout is the longest silence, not the time for the whole answer."""
    reply = response()
    pieces = [reply[i : i + 8] for i in range(0, len(reply), 8)]
    server = serve(always(*pieces, pause_s=0.03))
    found = run(server.base_url, lambda client: client.get_booking("b1"), read_timeout=0.2)
    assert found["uid"] == "b1"
    assert len(pieces) * 0.03 > 0.2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad answer head"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "dropped before an answer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"),
        # Over httpcore's 100 KiB bound for a head still arriving, in pieces.
        (
            b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 50_000 + b"\r\nX-Pad: " + b"a" * 60_000,
            "too long",
        ),
    ],
    ids=["malformed", "cut-head", "transfer-coding", "huge-head"],
)
def test_a_broken_head_is_a_transport_failure(serve: Serve, reply: bytes, message: str) -> None:
    server = serve(always(reply, then="close"))
    with pytest.raises(TransportError, match=message):
        run(server.base_url, lambda client: client.get_booking("b1"))


def test_a_post_whose_connection_drops_before_the_answer_is_in_doubt(
    serve: Serve,
) -> None:
    server = serve(always(then="close"))
    with pytest.raises(InDoubtError, match="dropped before an answer"):
        run(server.base_url, lambda client: client.cancel_booking("b1"), max_retries=3)
    assert len(server.heads) == 1


def test_informational_answers_are_skipped(serve: Serve) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    server = serve(always(early + response()))
    assert run(server.base_url, lambda client: bookings(client, 2)) == ["b1"] * 2


def test_an_endless_trailer_section_is_cut_off_with_memory_bounded(
    serve: Serve,
) -> None:
    trailer = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
    start = [*chunked(BOOKING, 100)[:-1], b"0\r\n"]
    server = serve(lambda index, head: Answer(itertools.chain(start, itertools.repeat(trailer))))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProtocolError, match="body cut short"):
            run(server.base_url, lambda client: client.get_booking("b1"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 3.0
    assert peak < 4 * 1024 * 1024


def test_a_retry_after_in_a_trailer_is_not_obeyed(serve: Serve) -> None:
    """Trailers are no headers: a 503 whose only Retry-After comes after the body is retried
    on the backoff (at most 0.5 s for a first retry), not after the 60 s it asks for."""
    head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b'{"errors": {"message": "busy"}}'
    late = [head, f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\nRetry-After: 60\r\n\r\n"]
    server = serve(lambda index, head: Answer(late if index == 0 else [response()]))

    async def get(client: AsyncJicooClient) -> tuple[object, int]:
        booking = await client.get_booking("b1")
        return booking["uid"], client.report.retries

    started = time.monotonic()
    assert run(server.base_url, get, max_retries=1) == ("b1", 1)
    assert time.monotonic() - started < 5.0


def test_a_stray_second_response_is_not_taken_for_the_next_answer(
    serve: Serve,
) -> None:
    stray = response(b'{"data": {"uid": "stray", "status": "open"}}', headers=("Retry-After: 9",))

    def answer(index: int, head: bytes) -> Answer:
        # A moment apart: bytes that arrive in the same read as the answer stay in h11's
        # buffer, where httpcore does not look: it checks only whether the socket is readable.
        return Answer([response(), stray] if index == 0 else [response()], pause_s=0.05)

    server = serve(answer)
    assert run(server.base_url, lambda client: bookings(client, 2, pause_s=0.1)) == ["b1"] * 2
    assert server.connections == 2  # the connection with unasked-for bytes was dropped


def test_a_100_kb_head_in_one_piece_is_refused(serve: Serve) -> None:
    server = serve(always(response(headers=("X-Pad: " + "a" * 100_000,))))
    with pytest.raises(ProtocolError, match="answer head larger than 65536 bytes"):
        run(server.base_url, lambda client: client.get_booking("b1"), max_retries=2)
    assert len(server.heads) == 1  # the same answer would come again: not retried


def test_a_head_answer_is_not_waited_on_for_a_body(serve: Serve) -> None:
    """HEAD answers carry the GET's Content-Length and no body."""
    server = serve(always(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"))
    settings = Settings(api_key=ApiKey(KEY), base_url=server.base_url, read_timeout=5.0)

    async def head() -> None:
        core = HttpCore(settings, limiter=RateLimiter(UNTHROTTLED, 100))
        try:
            with pytest.raises(ProtocolError, match="invalid JSON"):
                await core.request("HEAD", "/v1/bookings/b1", report=FetchReport())
        finally:
            await core.aclose()

    started = time.monotonic()
    asyncio.run(head())
    assert time.monotonic() - started < 2.0
