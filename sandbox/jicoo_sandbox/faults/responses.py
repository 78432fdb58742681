"""What a faulty server answers: error, malformed and hostile bodies, and Retry-After.

Raw ASGI helpers the injector (injector.py) and the control endpoints (control.py) answer with.
"""

import asyncio
import datetime as dt
import email.utils
import functools
import json
import math
import zlib
from collections.abc import Iterator
from typing import Final

from starlette.types import Receive, Send

from jicoo_sandbox.faults.profile import (
    DEFAULT_HUGE_BODY_BYTES,
    DEFAULT_RETRY_AFTER_S,
    FaultRule,
)

__all__ = [
    "DEEP_NESTING_DEPTH",
    "MALFORMED_BODY",
    "MIN_RETRY_AFTER_S",
    "error_body",
    "json_response",
    "read_body",
    "retry_after_header",
    "send_hostile",
]

MIN_RETRY_AFTER_S: Final = 1
# Far beyond any JSON parser's recursion limit (CPython's json gives up near 1,000).
DEEP_NESTING_DEPTH: Final = 100_000
# Above CPython's int-from-string limit (4,300 digits) so naive parsing raises.
HUGE_NUMBER_DIGITS: Final = 5_000
STREAM_CHUNK_BYTES: Final = 64 * 1024
GZIP_WBITS: Final = 31  # zlib: 16 + 15 = gzip container, largest window


def error_body(code: str, message: str) -> bytes:
    return json.dumps(
        {"data": None, "errors": {"code": code, "message": message, "fields": {}}}
    ).encode()


# A list page cut off in the middle of a string: no parser can accept it.
MALFORMED_BODY: Final = b'{"data": [{"uid": "mzgdPJVBb7RE", "name": "Intro call, "status": "op'
_PAGE_TAIL: Final = b', "errors": {}, "count": 1, "currentPage": 1, "numberOfPages": 1'


def _hostile_body(variant: str) -> bytes:
    if variant == "deep_nesting":
        depth = DEEP_NESTING_DEPTH
        return b'{"data": ' + b"[" * depth + b"]" * depth + b', "errors": {}}'
    if variant == "huge_number":
        digits = b"9" * HUGE_NUMBER_DIGITS
        return b'{"data": [], "errors": {}, "totalCount": ' + digits + b', "count": 0}'
    if variant == "nan":
        # NaN/Infinity are not JSON (RFC 8259 section 6) yet lenient parsers accept them.
        return (
            b'{"data": [{"uid": "nan", "priority": NaN}], "totalCount": Infinity'
            + _PAGE_TAIL
            + b"}"
        )
    if variant == "invalid_surrogate":
        # A lone high surrogate: valid JSON grammar, not valid Unicode (RFC 8259 section 8.2).
        return (
            b'{"data": [{"uid": "surrogate", "name": "\\ud800"}], "totalCount": 1'
            + _PAGE_TAIL
            + b"}"
        )
    raise AssertionError(f"not a fixed-size variant: {variant}")


_HUGE_PREFIX: Final = b'{"data": ['
_HUGE_SUFFIX: Final = b'{}], "errors": {}}'
_HUGE_UNIT: Final = b'{"uid": "padding", "name": "' + b"x" * 1000 + b'"},'


def _huge_body_units(size_bytes: int) -> int:
    overhead = len(_HUGE_PREFIX) + len(_HUGE_SUFFIX)
    # One byte more than asked, so the body is strictly bigger than size_bytes.
    return max(1, math.ceil((size_bytes + 1 - overhead) / len(_HUGE_UNIT)))


def _huge_body_chunks(size_bytes: int) -> Iterator[bytes]:
    units = _huge_body_units(size_bytes)
    per_chunk = max(1, STREAM_CHUNK_BYTES // len(_HUGE_UNIT))
    yield _HUGE_PREFIX
    while units > 0:
        take = min(units, per_chunk)
        yield _HUGE_UNIT * take
        units -= take
    yield _HUGE_SUFFIX


@functools.lru_cache(maxsize=4)
def _gzipped_huge_body(size_bytes: int) -> bytes:
    """A decompression bomb: tiny on the wire, ``size_bytes``+ once inflated. Cached: it is slow."""
    compressor = zlib.compressobj(level=9, wbits=GZIP_WBITS)
    parts = [compressor.compress(chunk) for chunk in _huge_body_chunks(size_bytes)]
    parts.append(compressor.flush())
    return b"".join(parts)


def retry_after_header(rule: FaultRule) -> list[tuple[bytes, bytes]]:
    seconds = rule.retry_after if rule.retry_after is not None else DEFAULT_RETRY_AFTER_S
    if rule.retry_after_format == "none":
        return []
    if rule.retry_after_format == "http_date":
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
        return [(b"retry-after", email.utils.format_datetime(when, usegmt=True).encode())]
    return [(b"retry-after", str(max(MIN_RETRY_AFTER_S, math.ceil(seconds))).encode())]


async def json_response(
    send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_hostile(rule: FaultRule, send: Send) -> None:
    variant = rule.variant or "huge_body"
    if variant != "huge_body":
        await json_response(send, 200, _hostile_body(variant))
        return
    size = rule.size_bytes or DEFAULT_HUGE_BODY_BYTES
    if rule.gzip:
        # Compressing hundreds of MB takes a while: keep the event loop free meanwhile.
        compressed = await asyncio.to_thread(_gzipped_huge_body, size)
        await json_response(send, 200, compressed, [(b"content-encoding", b"gzip")])
        return
    length = len(_HUGE_PREFIX) + len(_HUGE_SUFFIX) + _huge_body_units(size) * len(_HUGE_UNIT)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in _huge_body_chunks(size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
