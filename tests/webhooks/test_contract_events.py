"""Webhook bodies as the contract's public callers saw them: `tracking.utm_*` null or `tracking`
empty, `eventTypeId` where `eventTypeUid` is missing. Each is stored once, answered 200."""

import json

import httpx
import pytest

from jicoo_sandbox.webhooks import sign
from tests.support.webhook_receiver import NOW, SECRET, Receiver

UTM_KEYS = ("utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term")


def _object(uid: str, **extra: object) -> dict[str, object]:
    return {
        "uid": uid,
        "status": "open",
        "timeZone": "Asia/Tokyo",
        "createdAt": "2026-02-27T06:00:00.000Z",
        "updatedAt": "2026-02-27T06:00:00.000Z",
        "startedAt": "2026-03-02T01:00:00.000Z",
        "endedAt": "2026-03-02T01:30:00.000Z",
        "contact": {"email": "guest@example.com", "name": "Guest"},
        "answers": [],
        **extra,
    }


@pytest.mark.parametrize(
    "variant",
    [
        {"eventTypeUid": "mzgdPJVBb7RE", "tracking": dict.fromkeys(UTM_KEYS)},
        {"eventTypeUid": "mzgdPJVBb7RE", "tracking": {}},
        {"eventTypeId": "mzgdPJVBb7RE", "tracking": {"utm_source": "line", "utm_term": None}},
    ],
    ids=["utm-null", "tracking-empty", "eventTypeId"],
)
def test_events_in_the_shapes_public_callers_saw_are_stored(
    receiver: Receiver, variant: dict[str, object]
) -> None:
    body = json.dumps(
        {
            "createdAt": "2026-02-27T06:00:00.000Z",
            "event": "guest_booked",
            "object": _object("contractUid01", **variant),
        }
    ).encode()
    answer = httpx.post(
        receiver.url,
        content=body,
        headers={"Jicoo-Webhook-Signature": sign(SECRET, body, NOW)},
        timeout=10,
    )
    assert answer.status_code == 200
    assert receiver.rows() == [("guest_booked", "contractUid01", "2026-02-27T06:00:00.000Z")]
