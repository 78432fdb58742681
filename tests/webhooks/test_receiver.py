"""The receiver over real HTTP: signatures (made by the sandbox's own signer), caps, answers."""

import logging
from pathlib import Path

import httpx
import pytest

from jicoo_connector.errors import WebhookSignatureError
from jicoo_connector.webhooks import WebhookSecrets, verify_signature
from jicoo_sandbox.webhooks import sign
from tests.support.webhook_receiver import (
    NOW,
    OLD_SECRET,
    SECRET,
    TIMEOUT_S,
    Receiver,
    event_body,
    post,
)


def test_a_valid_signature_is_recorded_once_and_a_replay_answers_200(receiver: Receiver) -> None:
    body = event_body()
    first = post(receiver, body, sign(SECRET, body, NOW))
    replay = post(receiver, body, sign(SECRET, body, NOW + 60))
    assert (first.status_code, first.json()["recorded"]) == (200, True)
    assert (replay.status_code, replay.json()["duplicate"]) == (200, True)
    assert receiver.rows() == [("guest_booked", "mzgdPJVBb7RE", "2026-11-30T01:02:03.456Z")]


@pytest.mark.parametrize(
    ("case", "signature", "sent"),
    [
        ("wrong secret", lambda b: sign("whsec_someone_else", b, NOW), None),
        ("too old", lambda b: sign(SECRET, b, NOW - 301), None),
        ("too far ahead", lambda b: sign(SECRET, b, NOW + 301), None),
        ("tampered body", lambda b: sign(SECRET, b, NOW), event_body(uid="SOMEONEELSE1")),
        ("missing header", lambda b: None, None),
        ("no v1", lambda b: f"t={NOW}", None),
        ("garbage", lambda b: "v1=zz,t=soon", None),
    ],
)
def test_a_bad_signature_is_401_and_nothing_is_stored(
    receiver: Receiver, case: str, signature: object, sent: bytes | None
) -> None:
    body = event_body()
    assert callable(signature)
    response = post(receiver, sent or body, signature(body))
    assert response.status_code == 401, case
    assert receiver.rows() == []


def test_timestamps_within_five_minutes_pass(receiver: Receiver) -> None:
    for offset, uid in ((-299, "PASTUID00001"), (299, "FUTUREUID001")):
        body = event_body(uid=uid)
        assert post(receiver, body, sign(SECRET, body, NOW + offset)).status_code == 200
    assert len(receiver.rows()) == 2


def test_any_of_several_v1_values_and_any_configured_secret_passes(receiver: Receiver) -> None:
    body = event_body()
    right = sign(SECRET, body, NOW).split("v1=")[1]
    two_values = f"t={NOW},v1={'0' * 64},v1={right}"
    assert post(receiver, body, two_values).status_code == 200
    rotated = event_body(uid="ROTATEDUID01")
    assert post(receiver, rotated, sign(OLD_SECRET, rotated, NOW)).status_code == 200
    assert len(receiver.rows()) == 2


def test_oversized_body_is_413_and_not_stored(receiver: Receiver) -> None:
    body = b'{"pad": "' + b"x" * 300_000 + b'"}'
    assert post(receiver, body, sign(SECRET, body, NOW)).status_code == 413

    def chunks() -> object:
        for _ in range(300):
            yield b"x" * 1024

    streamed = httpx.post(receiver.url, content=chunks(), timeout=TIMEOUT_S)  # type: ignore[arg-type]
    assert streamed.status_code == 413
    assert receiver.rows() == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"event": "guest_booked"}',
        b'{"event": "guest_booked", "createdAt": "yesterday", "object": {"uid": "a"}}',
        b'{"event": "guest_booked", "createdAt": "2026-11-30T01:02:03Z", "object": {}}',
    ],
)
def test_signed_json_that_is_not_an_event_is_400(receiver: Receiver, body: bytes) -> None:
    assert post(receiver, body, sign(SECRET, body, NOW)).status_code == 400
    assert receiver.rows() == []


def test_unknown_event_types_are_stored_and_flagged(receiver: Receiver) -> None:
    body = event_body(event="guest_reminded")
    response = post(receiver, body, sign(SECRET, body, NOW))
    assert (response.status_code, response.json()["known"]) == (200, False)
    assert receiver.rows() == [("guest_reminded", "mzgdPJVBb7RE", "2026-11-30T01:02:03.456Z")]


def test_neither_secret_nor_signature_reaches_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = event_body()
    good = sign(SECRET, body, NOW)
    post(receiver, body, good)
    bad = sign("whsec_wrong", body, NOW)
    post(receiver, body, bad)
    text = caplog.text
    assert "webhook refused (401)" in text
    for secret_text in (SECRET, OLD_SECRET, good.split("v1=")[1], bad.split("v1=")[1]):
        assert secret_text not in text
    assert SECRET not in repr(WebhookSecrets.parse(SECRET))


def test_verify_signature_names_the_reason_without_the_secret() -> None:
    secrets = WebhookSecrets.parse(SECRET)
    body = event_body()
    assert verify_signature(sign(SECRET, body, NOW), body, secrets, now=NOW) == NOW
    with pytest.raises(WebhookSignatureError, match="away from now") as stale:
        verify_signature(sign(SECRET, body, NOW - 400), body, secrets, now=NOW)
    assert SECRET not in str(stale.value)
    with pytest.raises(WebhookSignatureError, match="no v1 signature matches"):
        verify_signature(f"t={NOW},v1={'0' * 64}", body, secrets, now=NOW)
    with pytest.raises(WebhookSignatureError, match="v1= is not hex"):
        verify_signature(f"t={NOW},v1=é", body, secrets, now=NOW)


def test_mounted_as_a_route_of_another_app_it_answers_on_that_path(tmp_path: Path) -> None:
    inside = Receiver(tmp_path / "events.sqlite", SECRET, route="/jicoo/webhooks")
    try:
        body = event_body()
        assert inside.url.endswith("/jicoo/webhooks")
        assert post(inside, body, sign(SECRET, body, NOW)).status_code == 200
        assert len(inside.rows()) == 1
    finally:
        inside.close()
