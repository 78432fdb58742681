"""What the client puts on the wire: the request line and headers, and no way for an id, a
method or a path to add a header or a request (CR/LF). Against a capturing server."""

import asyncio
import contextlib

import pytest

from jicoo_connector.client import AsyncJicooClient, RateLimiter
from jicoo_connector.client._http import HttpCore
from jicoo_connector.client._report import FetchReport
from jicoo_connector.errors import ProtocolError
from jicoo_connector.settings import ApiKey, Settings
from tests.client.wire import KEY, UNTHROTTLED, run
from tests.support.capture_server import CaptureServer


def test_request_line_and_headers(capture_server: CaptureServer) -> None:
    async def both(client: AsyncJicooClient) -> None:
        for call in (client.get_booking("a b/c"), client.cancel_booking("x", reason="r")):
            with pytest.raises(ProtocolError):  # the capture server answers data: null
                await call

    run(f"{capture_server.base_url}/api/", both, user_agent="wire-test/1")
    host = capture_server.base_url.removeprefix("http://")
    get, post = capture_server.requests
    assert capture_server.paths == ["/api/v1/bookings/a%20b%2Fc", "/api/v1/bookings/x/cancel"]
    assert get["host"] == host
    assert get["x-jicoo-api-key"] == KEY
    assert get["accept"] == "application/json"
    assert get["accept-encoding"] == "gzip, deflate"
    assert get["user-agent"] == "wire-test/1"
    assert "content-length" not in get
    assert "content-type" not in get
    sent = b'{"cancelReason":"r"}'
    assert (post["content-type"], post["content-length"]) == ("application/json", str(len(sent)))


def test_cr_lf_in_an_id_cannot_add_a_header_or_a_request(capture_server: CaptureServer) -> None:
    async def get(client: AsyncJicooClient) -> None:
        with pytest.raises(ProtocolError):  # the capture server answers data: null
            await client.get_booking("b1\r\nX-Injected: 1\r\n\r\nGET /evil HTTP/1.1")

    run(capture_server.base_url, get)
    assert capture_server.paths == [
        "/v1/bookings/b1%0D%0AX-Injected%3A%201%0D%0A%0D%0AGET%20%2Fevil%20HTTP%2F1.1"
    ]
    assert "x-injected" not in capture_server.requests[0]


@pytest.mark.parametrize(
    ("method", "endpoint"),
    [
        ("GET /evil HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", "/v1/bookings"),
        ("GET", "/v1/bookings\r\nX-Injected: 1"),
    ],
    ids=["method", "path"],
)
def test_cr_lf_reaching_the_http_layer_is_never_sent_raw(
    capture_server: CaptureServer, method: str, endpoint: str
) -> None:
    settings = Settings(api_key=ApiKey(KEY), base_url=capture_server.base_url, max_retries=0)

    async def send() -> None:
        core = HttpCore(settings, limiter=RateLimiter(UNTHROTTLED, 100))
        try:
            with contextlib.suppress(ProtocolError):
                await core.request(method, endpoint, report=FetchReport())
        finally:
            await core.aclose()

    asyncio.run(send())
    assert len(capture_server.paths) <= 1
    assert all("\r" not in path and "\n" not in path for path in capture_server.paths)
    assert all("x-injected" not in request for request in capture_server.requests)
