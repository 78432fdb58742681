"""Every input gets an answer under 500, and only valid events are stored.

Each hostile case found in the probe (a 500 that tells the sender to retry forever) is pinned
here, then a property test feeds generated signature headers and bodies over real HTTP.
"""

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jicoo_sandbox.webhooks import sign
from tests.support.webhook_receiver import (
    HEADER,
    NOW,
    OLD_SECRET,
    SECRET,
    TIMEOUT_S,
    Receiver,
    event_body,
    post,
)

VALID = event_body()


def _nested(depth: int) -> bytes:
    inner = b"[" * depth + b"]" * depth
    return b'{"event": "guest_booked", "createdAt": "2026-11-30T01:02:03.456Z", "object": ' + (
        b'{"uid": "deep", "answers": ' + inner + b"}}"
    )


def _event(created_at: str = "2026-11-30T01:02:03.456Z", uid: str = "mzgdPJVBb7RE") -> bytes:
    return json.dumps(
        {"event": "guest_booked", "createdAt": created_at, "object": {"uid": uid}},
        ensure_ascii=True,  # a lone surrogate goes out as the escape \\ud800, as JSON allows
    ).encode()


@pytest.mark.parametrize(
    "header",
    [
        f"t={'9' * 400},v1={'0' * 64}",  # a t= of 400 digits
        f"t=\u00b2,v1={'0' * 64}",  # "²".isdigit() is True
        f"t=\u0661\u0662,v1={'0' * 64}",  # Arabic-Indic digits, which int() reads
        f"t={NOW},v1=xyz",
        f"t={NOW},v1={'0' * 63}",
        ",".join([f"t={NOW}", *[f"v1={'0' * 64}"] * 40]),
        f"t={NOW},t={NOW},v1={'0' * 64}",
        "garbage",
    ],
)
def test_a_malformed_signature_header_is_401(receiver: Receiver, header: str) -> None:
    # Header bytes reach the app as latin-1 (ASGI): "²" as the one byte 0xb2, as a sender
    # would put it; what latin-1 cannot carry goes as UTF-8 bytes.
    try:
        raw = header.encode("latin-1")
    except UnicodeEncodeError:
        raw = header.encode()
    response = httpx.post(receiver.url, content=VALID, headers={HEADER: raw}, timeout=TIMEOUT_S)
    assert response.status_code == 401
    assert receiver.rows() == []


@pytest.mark.parametrize(
    "body",
    [
        _nested(3000),
        _event(created_at="9999-12-31T23:59:59-14:00"),  # out of range once made UTC
        _event(created_at="0001-01-01T00:00:00+14:00"),
        _event(created_at="1969-12-31T23:59:59Z"),
        _event(uid="\ud800"),  # a lone surrogate SQLite cannot store
        b'{"event": "guest_booked", "createdAt": "2026-11-30T01:02:03Z", "object": {"uid": NaN}}',
        b'{"event": "guest_booked", "createdAt": 1e999, "object": {"uid": "a"}}',
        b"\xff\xfe{}",
    ],
)
def test_a_signed_body_that_is_not_an_event_is_400(receiver: Receiver, body: bytes) -> None:
    response = post(receiver, body, sign(SECRET, body, NOW))
    assert response.status_code == 400
    assert receiver.rows() == []


def test_an_event_with_event_type_id_instead_of_uid_is_recorded(receiver: Receiver) -> None:
    """The contract: a webhook may carry eventTypeId where eventTypeUid is missing."""
    body = json.dumps(
        {
            "createdAt": "2026-11-30T01:02:03.456Z",
            "event": "guest_booked",
            "object": {"uid": "withEventTypeId", "eventTypeId": "et_1", "status": "open"},
        }
    ).encode()
    assert post(receiver, body, sign(SECRET, body, NOW)).status_code == 200
    assert receiver.rows() == [("guest_booked", "withEventTypeId", "2026-11-30T01:02:03.456Z")]


# -- generated input ----------------------------------------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
NAIVE_INSTANTS = st.datetimes().map(lambda d: d.isoformat())


@st.composite
def valid_events(draw: st.DrawFn) -> bytes:
    """Bodies that are events: what Jicoo sends, with extra fields of any shape."""
    created = draw(
        st.datetimes(
            min_value=dt.datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
            max_value=dt.datetime(9997, 12, 31),  # noqa: DTZ001
            timezones=st.timezones(),
        )
    )
    payload = {
        "event": draw(st.sampled_from(["guest_booked", "host_cancelled", "guest_reminded"])),
        "createdAt": created.isoformat(),
        "object": {
            "uid": draw(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20)),
            **draw(st.dictionaries(st.sampled_from(["status", "eventTypeId", "x"]), JSON)),
        },
        **draw(st.dictionaries(st.sampled_from(["extra", "more"]), JSON)),
    }
    return json.dumps(payload).encode()


@st.composite
def invalid_events(draw: st.DrawFn) -> bytes:
    """Bodies that are not events, by construction: a field missing or of the wrong kind, a
    date that is not one, hostile JSON or no JSON."""
    base: dict[str, object] = {
        "event": "guest_booked",
        "createdAt": "2026-11-30T01:02:03.456Z",
        "object": {"uid": "u1"},
    }
    how = draw(st.sampled_from(["drop", "retype", "date", "deep", "raw", "surrogate"]))
    if how == "drop":
        del base[draw(st.sampled_from(["event", "createdAt", "object"]))]
    elif how == "retype":
        field = draw(st.sampled_from(["event", "createdAt", "object", "uid"]))
        wrong = draw(st.none() | st.integers() | st.lists(st.integers(), max_size=2) | st.just(""))
        if field == "uid":
            base["object"] = {"uid": wrong}
        else:
            base[field] = wrong
    elif how == "date":
        base["createdAt"] = draw(
            st.text(max_size=30)
            | st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
            | NAIVE_INSTANTS  # no zone
        )
    elif how == "deep":
        return _nested(draw(st.integers(min_value=1100, max_value=5000)))
    elif how == "raw":
        return draw(st.binary(max_size=200).filter(lambda b: not b.strip().startswith(b"{")))
    else:
        return _event(uid=draw(st.sampled_from(["\ud800", "a\udfff", "\udc00z"])))
    return json.dumps(base).encode()


FIELD_VALUE = re.compile(rb"([\x21-\x7e\x80-\xff]([ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
HEADERS = st.one_of(
    # What HTTP can carry as a field value (RFC 9110's field-value, as the client checks it):
    # visible bytes, with spaces and tabs inside only.
    st.binary(max_size=120).filter(FIELD_VALUE.fullmatch),
    st.builds(
        lambda t, v: f"t={t},v1={v}".encode(),
        st.text(alphabet="0123456789\u00b2\u0661\u00bd-+ ", max_size=30),
        st.text(alphabet="0123456789abcdefABCDEFxyz", max_size=70),
    ),
)


@pytest.fixture(scope="module")
def shared_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    running = Receiver(
        tmp_path_factory.mktemp("hostile") / "events.sqlite", f"{SECRET}, {OLD_SECRET}"
    )
    yield running
    running.close()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT_S) as shared:
        yield shared


def _stored(receiver: Receiver) -> int:
    return len(receiver.store.events_after(0, 1_000_000))


# 150 examples over real HTTP: minutes on a loaded 2-core machine, past the default 120 s.
@pytest.mark.timeout(600)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    made=valid_events().map(lambda b: (b, True)) | invalid_events().map(lambda b: (b, False)),
    signing=st.sampled_from(["good", "old secret", "wrong secret", "stale", "header"]),
    header=HEADERS,
)
def test_generated_headers_and_bodies_get_no_5xx_and_only_valid_events_are_stored(
    shared_receiver: Receiver,
    client: httpx.Client,
    made: tuple[bytes, bool],
    signing: str,
    header: bytes,
) -> None:
    receiver = shared_receiver
    body, is_event = made
    signatures = {
        "good": sign(SECRET, body, NOW).encode(),
        "old secret": sign(OLD_SECRET, body, NOW).encode(),
        "wrong secret": sign("whsec_wrong", body, NOW).encode(),
        "stale": sign(SECRET, body, NOW - 3600).encode(),
        "header": header,
    }
    before = _stored(receiver)
    status = client.post(receiver.url, content=body, headers={HEADER: signatures[signing]})
    stored = _stored(receiver) - before
    answer = status.status_code
    assert answer < 500
    if signing not in ("good", "old secret"):
        assert (answer, stored) == (401, 0)
    elif is_event:
        assert answer == 200  # stored now, or a replay of an event stored before
    else:
        assert (answer, stored) == (400, 0)


def test_a_store_that_fails_is_the_one_500(tmp_path: Path) -> None:
    """Where a retry is right: the event was not recorded."""
    failing = Receiver(tmp_path / "events.sqlite", SECRET)
    try:
        failing.store.close()  # every record now fails
        assert post(failing, VALID, sign(SECRET, VALID, NOW)).status_code == 500
    finally:
        failing.server.should_exit = True
        failing.thread.join(10)
