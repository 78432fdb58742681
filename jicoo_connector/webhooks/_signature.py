"""Verifying ``Jicoo-Webhook-Signature`` (the receiver's side). Pure: no I/O, no clock of its own.

The scheme (../shared/jicoo-api/README.md, "Webhooks"): the header is ``t=<unix seconds>,v1=<hex>``,
the signature an HMAC-SHA256 of ``"<t>." + raw body`` keyed with the endpoint's secret, compared
in constant time. Several ``v1`` values may come at once, and several secrets may be configured
(rotation): any match passes.
"""

import hashlib
import hmac
import re
from collections.abc import Iterator, Sequence

from jicoo_connector.errors import ConfigError, WebhookSignatureError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "WebhookSecrets",
    "verify_signature",
]

SIGNATURE_HEADER = "Jicoo-Webhook-Signature"
# Receivers commonly refuse timestamps more than 5 minutes away: a captured delivery cannot be
# replayed later, and a sender whose clock is that far off is a misconfiguration worth seeing.
DEFAULT_TOLERANCE_S = 300
SCHEME = "v1"
# A header is a handful of fields; anything much longer is not one of Jicoo's.
MAX_HEADER_CHARS = 4096
MAX_HEADER_PARTS = 16
# Unix seconds in ASCII digits ("²".isdigit() is True, and int() reads it): 12 digits reach
# the year 33658, and a 400-digit t would only cost time to compare.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# An HMAC-SHA256 in hex.
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class WebhookSecrets:
    """The endpoint secrets (several during a rotation); ``repr`` and ``str`` never show them.

    >>> WebhookSecrets.parse("whsec_new, whsec_old")
    WebhookSecrets(2 secrets)
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        keys = tuple(s.strip() for s in secrets if s.strip())
        if not keys:
            raise ConfigError("no webhook secret given (comma-separated during a rotation)")
        self._keys = tuple(key.encode() for key in keys)

    @classmethod
    def parse(cls, text: str) -> "WebhookSecrets":
        return cls(text.split(","))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"WebhookSecrets({len(self._keys)} secret{'s' if len(self._keys) != 1 else ''})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("WebhookSecrets is not picklable: secrets do not travel")


def _parse(header: str) -> tuple[int, list[bytes]]:
    """``t`` and the ``v1`` values of a header, read strictly: ``t`` ASCII digits of bounded
    length, each ``v1`` hex of a SHA-256's length, at most ``MAX_HEADER_PARTS`` parts."""
    parts = header.split(",")
    if len(parts) > MAX_HEADER_PARTS:
        raise WebhookSignatureError(f"malformed signature header: over {MAX_HEADER_PARTS} parts")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for part in parts:
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            if not _TIMESTAMP.fullmatch(value) or timestamp is not None:
                raise WebhookSignatureError("malformed signature header: bad or repeated t=")
            timestamp = int(value)
        elif name == SCHEME:
            if not _SIGNATURE.fullmatch(value):
                raise WebhookSignatureError("malformed signature header: v1= is not hex")
            signatures.append(value.lower().encode("ascii"))
    if timestamp is None or not signatures:
        raise WebhookSignatureError("malformed signature header: needs t= and at least one v1=")
    return timestamp, signatures


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: WebhookSecrets,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a delivery's signature header against ``body``; returns its timestamp ``t``.

    Raises ``WebhookSignatureError`` (whose message names the reason, never a secret or the
    signature) when the header is missing or malformed, ``t`` is more than ``tolerance_s``
    away from ``now`` (unix seconds), or no ``v1`` matches any secret.
    """
    if not header:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    if len(header) > MAX_HEADER_CHARS:
        raise WebhookSignatureError("malformed signature header: too long")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise WebhookSignatureError(
            f"signature timestamp is {now - timestamp:+.0f} s away from now "
            f"(tolerance {tolerance_s:.0f} s)"
        )
    signed = str(timestamp).encode() + b"." + body
    for key in secrets:
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        # Every candidate is compared (no early exit on the first v1) so timing does not tell
        # which one came close.
        matched = [hmac.compare_digest(expected, candidate) for candidate in signatures]
        if any(matched):
            return timestamp
    raise WebhookSignatureError("no v1 signature matches a configured secret")
