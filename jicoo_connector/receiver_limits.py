"""The webhook receiver's bounds, with their defaults: what one sender, or a thousand, may hold.

A module of its own, importing nothing: ``config`` takes its ``JICOO_WEBHOOK_*`` defaults from
here without loading the webhooks package (or the extra), and ``jicoo_connector.webhooks``
exports ``ReceiverLimits`` for ``create_app`` and ``serve``.
"""

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "ReceiverLimits",
]

DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_MAX_HEADERS: Final = 64
DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_BODY_TIMEOUT_S: Final = 10.0
DEFAULT_KEEP_ALIVE_S: Final = 5
# A booking event is a few KB: room for long answers, while a flood of large bodies cannot
# fill memory or the disk.
DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ReceiverLimits:
    """The receiver's bounds (``JICOO_WEBHOOK_*``; ``ConnectorConfig.receiver_limits()``)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
