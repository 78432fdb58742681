"""httpx transports side by side, each request to the least busy one.

httpcore's pool does O(connections**2) work on every request it queues or releases (it probes
every idle socket with poll() and getpeername() and recounts the pool for each): at the
client's 20 connections that was a third of its CPU (cProfile of a 50,000-booking extract,
again on 2026-12-01). Pools of 4 connections still made six such probes per request (cProfile,
2026-12-08); a pool of one connection makes two, so each shard holds one.
"""

import ssl
from collections.abc import AsyncIterator

import httpx

__all__ = ["CONNECTIONS_PER_SHARD", "ShardedTransport"]

CONNECTIONS_PER_SHARD = 1


class _Release:
    def __init__(self, loads: list[int], shard: int) -> None:
        self._loads = loads
        self._shard = shard
        self._done = False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._loads[self._shard] -= 1


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its shard when the connection under it is free again."""

    def __init__(self, inner: httpx.AsyncByteStream, release: _Release) -> None:
        self._inner = inner
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


class ShardedTransport(httpx.AsyncBaseTransport):
    """``connections`` connections in small pools. The caller never has more requests in
    flight than connections, so the least busy shard always has one free."""

    def __init__(
        self,
        connections: int,
        *,
        verify: ssl.SSLContext,
        proxy: httpx.Proxy | None,
        keepalive_expiry: float,
    ) -> None:
        shards = -(-connections // CONNECTIONS_PER_SHARD)
        per_shard = -(-connections // shards)
        limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=keepalive_expiry,
        )
        self._shards = [
            httpx.AsyncHTTPTransport(
                verify=verify, limits=limits, proxy=proxy, trust_env=False, retries=0
            )
            for _ in range(shards)
        ]
        self._loads = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = min(range(len(self._loads)), key=self._loads.__getitem__)
        self._loads[shard] += 1
        release = _Release(self._loads, shard)
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            release()
            raise
        if not isinstance(response.stream, httpx.AsyncByteStream):
            release()
            return response
        response.stream = _ReleasingStream(response.stream, release)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
