"""Fixtures of the sandbox tests: a plain httpx client with the sandbox's key."""

from collections.abc import Iterator

import httpx
import pytest

from jicoo_sandbox.server import SandboxServer

CLIENT_TIMEOUT_S = 10.0


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox.base_url,
        headers={"X-Jicoo-Api-Key": sandbox.api_key},
        timeout=CLIENT_TIMEOUT_S,
    ) as http:
        yield http
