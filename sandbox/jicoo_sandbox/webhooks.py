"""The sandbox's webhook sender and churn: signed events for every booking change, like Jicoo.

Changes made through the API are sent as ``host_*`` events (an API key acts for the host side);
churn (changes the sandbox makes on its own, a given number per second) as ``guest_*`` events.
Delivery is at least once: a failed POST (connection error, non-2xx) is retried with capped
exponential backoff, by ``concurrency`` delivery threads (several POSTs in flight at once, as a
real sender has). Faults: ``duplicate`` sends that share of events twice, ``reorder_ms``
delays each first attempt by a random 0..N ms so deliveries overtake each other. The journal
gets an ``EVENT`` entry per event (the test oracle) and a ``WEBHOOK`` entry per attempt.

Signing is the sender's side and lives here on purpose: the sandbox imports nothing of the
connector, and the receiver's verifier must be tested against an independent signer.
"""

import contextlib
import hashlib
import heapq
import hmac
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import httpx
import orjson

from jicoo_sandbox.config import WebhookOptions
from jicoo_sandbox.drift import drift_insert
from jicoo_sandbox.index import BookingQuery
from jicoo_sandbox.instants import MS_PER_DAY, parse_datetime

if TYPE_CHECKING:
    from jicoo_sandbox.store import SandboxStore

__all__ = ["ChurnRunner", "WebhookSender", "event_payload", "sign"]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "Jicoo-Webhook-Signature"
EVENT_METHOD: Final = "EVENT"
DELIVERY_METHOD: Final = "WEBHOOK"
CHURN_METHOD: Final = "CHURN"
# Which API operation sends which event (PATCH only when it moves the booking).
API_EVENTS: Final = {
    "rescheduleBooking": "host_rescheduled",
    "updateBooking": "host_rescheduled",
    "cancelBooking": "host_cancelled",
}
DELIVERY_TIMEOUT_S: Final = 10.0
IDLE_WAIT_S: Final = 0.5
CHURN_HORIZON_MS: Final = 14 * 24 * 3600 * 1000
CHURN_LEAD_MS: Final = 3600 * 1000
CHURN_TRIES: Final = 10
# Shares of churn changes: new bookings, cancellations; the rest are reschedules.
CHURN_CREATE_SHARE: Final = 0.2
CHURN_CANCEL_SHARE: Final = 0.2
TRACKING_KEYS: Final = ("utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term")
HTTP_OK_MIN: Final = 200
HTTP_OK_MAX: Final = 299


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Jicoo-Webhook-Signature`` value: ``t=<unix s>,v1=<hex HMAC-SHA256 of "t." + body>``."""
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_payload(
    event: str, booking: Mapping[str, object], contact: Mapping[str, object] | None
) -> dict[str, object]:
    """The body Jicoo sends (README "Webhooks"); ``createdAt`` is the change's ``updatedAt``, so
    one change is one event identity and two changes never share one."""
    keys = ("uid", "status", "timeZone", "createdAt", "updatedAt", "startedAt", "endedAt",
            "cancelReason", "cancelledAt", "cancelledBy")  # fmt: skip
    obj: dict[str, object] = {key: booking.get(key) for key in keys}
    obj["eventTypeUid"] = booking.get("eventTypeId")
    obj["contact"] = (
        {"email": contact.get("email"), "name": contact.get("name")} if contact else None
    )
    answers = contact.get("answers") if contact else None
    obj["answers"] = answers if isinstance(answers, list) else []
    obj["tracking"] = dict.fromkeys(TRACKING_KEYS)
    return {"createdAt": booking.get("updatedAt"), "event": event, "object": obj}


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    body: bytes = field(compare=False)
    uid: str = field(compare=False)
    event: str = field(compare=False)
    copy: int = field(compare=False, default=0)
    attempt: int = field(compare=False, default=0)


class WebhookSender:
    """``options.concurrency`` delivery threads over one due-time heap; ``emit`` never blocks the
    request that changed the booking. ``close`` stops them (undelivered events stay undelivered,
    as in a crash)."""

    def __init__(self, options: WebhookOptions, store: "SandboxStore") -> None:
        self.options = options
        self.store = store
        self._rng = random.Random(options.seed)
        self._heap: list[_Delivery] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight = 0
        self._path = urlsplit(options.url).path or "/"
        self._threads = [
            threading.Thread(target=self._run, name=f"sandbox-webhooks-{n}", daemon=True)
            for n in range(options.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def emit(self, event: str, uid: str) -> None:
        """Send ``event`` for the booking as it is now; journaled as an ``EVENT`` entry."""
        booking = self.store.get_booking(uid)
        if booking is None:
            return
        contacts = self.store.contacts(uid) or []
        payload = event_payload(event, booking, contacts[0] if contacts else None)
        self.store.record(
            method=EVENT_METHOD, path=event, booking_uid=uid, body=payload, status=None,
            changed=False,
        )  # fmt: skip
        body = orjson.dumps(payload)
        copies = 2 if self._rng.random() < self.options.duplicate else 1
        now = time.monotonic()
        with self._cond:
            for copy in range(copies):
                delay = self._rng.uniform(0, self.options.reorder_ms) / 1000
                self._seq += 1
                heapq.heappush(
                    self._heap, _Delivery(now + delay, self._seq, body, uid, event, copy)
                )
            self._cond.notify(copies)

    def pending(self) -> int:
        """Deliveries waiting or being sent."""
        with self._cond:
            return len(self._heap) + self._in_flight

    def drain(self, timeout_s: float) -> bool:
        """Wait until every delivery was answered 2xx or given up; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(DELIVERY_TIMEOUT_S)

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._in_flight += 1
                    return heapq.heappop(self._heap)
                self._cond.wait(self._heap[0].due - now if self._heap else IDLE_WAIT_S)
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=DELIVERY_TIMEOUT_S) as client:
            while (delivery := self._next()) is not None:
                try:
                    self._attempt(client, delivery)
                finally:
                    with self._cond:
                        self._in_flight -= 1

    def _attempt(self, client: httpx.Client, delivery: _Delivery) -> None:
        delivery.attempt += 1
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self.options.secret, delivery.body, int(time.time())),
        }
        status: int | None = None
        error: str | None = None
        try:
            status = client.post(
                self.options.url, content=delivery.body, headers=headers
            ).status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = status is not None and HTTP_OK_MIN <= status <= HTTP_OK_MAX
        self.store.record(
            method=DELIVERY_METHOD, path=self._path, booking_uid=delivery.uid,
            body={"event": delivery.event, "attempt": delivery.attempt, "copy": delivery.copy},
            status=status, changed=ok, fault=error,
        )  # fmt: skip
        if ok:
            return
        if delivery.attempt >= self.options.max_attempts:
            logger.warning("webhook %s for %s given up after %d attempts", delivery.event,
                           delivery.uid, delivery.attempt)  # fmt: skip
            return
        backoff = min(
            self.options.max_backoff_s, self.options.backoff_s * 2 ** (delivery.attempt - 1)
        )
        delivery.due = time.monotonic() + backoff * self._rng.uniform(0.5, 1.0)
        with self._cond:
            heapq.heappush(self._heap, delivery)


class ChurnRunner:
    """Changes bookings on its own, ``rate`` per second (``limit`` in all, 0 = no limit):
    reschedules into a free slot of the next two weeks, cancellations and new bookings, each
    journaled as ``CHURN`` and sent as a ``guest_*`` event."""

    def __init__(self, store: "SandboxStore", sender: WebhookSender | None, rate: float,
                 *, limit: int = 0, seed: int = 0) -> None:  # fmt: skip
        if rate <= 0:
            raise ValueError("churn rate must be > 0 changes per second")
        self.store = store
        self.sender = sender
        self.rate = rate
        self.limit = limit
        self.done = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-churn", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(DELIVERY_TIMEOUT_S)

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set() and (not self.limit or self.done < self.limit):
            with contextlib.suppress(Exception):  # a change that cannot be made is skipped
                if self._change():
                    self.done += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _change(self) -> bool:
        roll = self._rng.random()
        if roll < CHURN_CREATE_SHARE:
            uids = drift_insert(self.store, 1, self._rng)
            return self._done("create", uids[0], "guest_booked")
        now = self.store.now_ms()  # the sandbox clock: churn works on any injected day
        query = BookingQuery("open", now + CHURN_LEAD_MS, now + CHURN_HORIZON_MS)
        total, _ = self.store.list_bookings(query, offset=0, limit=0)
        if not total:
            return False
        _, page = self.store.list_bookings(query, offset=self._rng.randrange(total), limit=1)
        uid = str(orjson.loads(page[0])["uid"])
        if roll < CHURN_CREATE_SHARE + CHURN_CANCEL_SHARE:
            self.store.cancel(uid, "churn")
            return self._done("cancel", uid, "guest_cancelled")
        booking = self.store.get_booking(uid)
        if booking is None or not isinstance(booking.get("eventTypeId"), str):
            return False
        for _ in range(CHURN_TRIES):
            start = now + CHURN_LEAD_MS + self._rng.randrange(CHURN_HORIZON_MS - CHURN_LEAD_MS)
            slots = self.store.available_slots(
                str(booking["eventTypeId"]), start, start + MS_PER_DAY
            )
            if slots:
                slot = str(self._rng.choice(slots)["startedAt"])
                self.store.reschedule(uid, _ms(slot), str(booking.get("timeZone") or "Asia/Tokyo"))
                return self._done("reschedule", uid, "guest_rescheduled")
        return False

    def _done(self, action: str, uid: str, event: str) -> bool:
        booking = self.store.get_booking(uid)
        if booking is None or (action == "create" and booking.get("status") != "open"):
            return False  # an insert that found no free slot is stored cancelled: no event
        self.store.record(
            method=CHURN_METHOD, path=f"/v1/bookings/{uid}", booking_uid=uid,
            body={"action": action}, status=None, changed=True,
        )  # fmt: skip
        if self.sender is not None:
            self.sender.emit(event, uid)
        return True


def _ms(instant: str) -> int:
    return int(parse_datetime(instant).timestamp() * 1000)
