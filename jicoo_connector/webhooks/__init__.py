"""Jicoo webhooks: signature check, event records, what to refresh, and the receiver.

The receive flow's entry points are ``create_app`` (the ASGI receiver, to mount in your own
server), ``create_router`` (one receiver for several organizations' ``WebhookEndpoint``s)
and ``serve`` (either under uvicorn). They need the extra ``[webhooks]`` (starlette and
uvicorn), so they load on first use: the code location reads the event store without
them. Every module inside is private: import from here.
"""

import importlib
from typing import TYPE_CHECKING

from jicoo_connector.receiver_limits import DEFAULT_MAX_BODY_BYTES, ReceiverLimits
from jicoo_connector.webhooks._events import (
    CANCEL_EVENTS,
    KNOWN_EVENTS,
    RESCHEDULE_EVENTS,
    WebhookEvent,
    format_instant,
    parse_event,
)
from jicoo_connector.webhooks._open import event_store_exists, open_event_store
from jicoo_connector.webhooks._pg_store import PostgresEventStore
from jicoo_connector.webhooks._refresh import (
    RefreshPlan,
    RefreshRange,
    plan_refresh,
    warehouse_days,
)
from jicoo_connector.webhooks._signature import (
    DEFAULT_TOLERANCE_S,
    SIGNATURE_HEADER,
    WebhookSecrets,
    verify_signature,
)
from jicoo_connector.webhooks._store import (
    EventPage,
    EventStore,
    SQLiteEventStore,
    StoredEvent,
)

if TYPE_CHECKING:
    from jicoo_connector.webhooks._receiver import (
        DEFAULT_ENDPOINT,
        HEALTH_PATH,
        READY_LINE_PREFIX,
        WebhookEndpoint,
        create_app,
        create_router,
        serve,
        server_config,
    )

__all__ = [
    "CANCEL_EVENTS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_S",
    "HEALTH_PATH",
    "KNOWN_EVENTS",
    "READY_LINE_PREFIX",
    "RESCHEDULE_EVENTS",
    "SIGNATURE_HEADER",
    "EventPage",
    "EventStore",
    "PostgresEventStore",
    "ReceiverLimits",
    "RefreshPlan",
    "RefreshRange",
    "SQLiteEventStore",
    "StoredEvent",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookSecrets",
    "create_app",
    "create_router",
    "event_store_exists",
    "format_instant",
    "open_event_store",
    "parse_event",
    "plan_refresh",
    "serve",
    "server_config",
    "verify_signature",
    "warehouse_days",
]


def __getattr__(name: str) -> object:
    # The receiver's names: the only ones __all__ holds that are not imported above.
    if name in __all__:
        return getattr(importlib.import_module("jicoo_connector.webhooks._receiver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
