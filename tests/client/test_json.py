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
    "raw",
    [
        # Brackets, digits and exponent-like text inside strings are not structure or numbers.
        b'{"data": "' + b"[" * 100 + b"]" * 10 + b'"}',
        b'{"data": "\\"' + b"{" * 100 + b'"}',
        b'{"data": ["12345678901234567890123", "9e99", "' + b"]" * 40 + b'"]}',
        b'{"data": [1.5e10, -9223372036854775808, 9223372036854775807, 0.25E-3]}',
        b'{"data": [' + b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2) + b"]}",
    ],
)
def test_strings_and_numbers_in_range_pass(raw: bytes) -> None:
    assert "data" in parse_json_object(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper"),
        (
            b'{"s": "\\"]]", "a": '
            + b"[{}," * MAX_JSON_DEPTH
            + b"1"
            + b"]" * MAX_JSON_DEPTH
            + b"}",
            "nested deeper",
        ),
        (
            b'{"s": "]]]]", "a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
            "nested deeper",
        ),
        (b'{"a": 1e19}', "beyond 64 bits"),
        (b'{"a": [{"b": -1.5E+30}]}', "beyond 64 bits"),
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
