"""parse_json_object: the JSON we accept from the server, and the hostile JSON we refuse."""

import pytest

from jicoo_connector.client._http import MAX_JSON_DEPTH, parse_json_object


def nested(depth: int) -> bytes:
    # ``depth`` levels counting the top-level object itself.
    return b'{"data": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_plain_objects_pass() -> None:
    body = b'{"data": [{"uid": "a", "n": -9223372036854775808, "x": 1.5e10}], "errors": {}}'
    assert parse_json_object(body)["errors"] == {}


def test_nesting_up_to_the_bound_passes() -> None:
    assert "data" in parse_json_object(nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid JSON"),
        (b'{"a": 9223372036854775808}', "beyond 64 bits"),
        (b'{"a": -9223372036854775809}', "beyond 64 bits"),
        (b'{"a": 123456789012345678901234567890}', "beyond 64 bits"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b'{"a": NaN}', "invalid JSON"),
        (b'{"a": -Infinity}', "invalid JSON"),
        (b'{"a": "\\ud800"}', "invalid JSON"),
        (b'{"a": "\xff"}', "invalid JSON"),
        (b'{"a": 1', "invalid JSON"),
        (b"[1, 2]", "not an object"),
        (b'"data"', "not an object"),
        (b"", "invalid JSON"),
    ],
)
def test_hostile_json_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_json_object(raw)
    assert raw.decode("latin-1")[:40] not in str(caught.value) or len(raw) < 3
