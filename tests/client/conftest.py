"""Fixtures of the client tests."""

import ssl
from collections.abc import Callable, Iterator

import pytest

from tests.client.wire import Answer, WireServer


@pytest.fixture
def serve() -> Iterator[Callable[..., WireServer]]:
    servers: list[WireServer] = []

    def start(
        answer: Callable[[int, bytes], Answer], tls: ssl.SSLContext | None = None, port: int = 0
    ) -> WireServer:
        server = WireServer(answer, tls, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
