"""Jicoo webhooks: signature check, event records, and what to refresh. No HTTP server here.

The ASGI receiver is ``jicoo_connector.webhooks.receiver`` (it needs the extra [webhooks]);
this package imports neither, so the code location can read the store without them.
"""

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
    SECRET_ENV,
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

__all__ = [
    "CANCEL_EVENTS",
    "DEFAULT_TOLERANCE_S",
    "KNOWN_EVENTS",
    "RESCHEDULE_EVENTS",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "EventPage",
    "EventStore",
    "PostgresEventStore",
    "RefreshPlan",
    "RefreshRange",
    "SQLiteEventStore",
    "StoredEvent",
    "WebhookEvent",
    "WebhookSecrets",
    "event_store_exists",
    "format_instant",
    "open_event_store",
    "parse_event",
    "plan_refresh",
    "verify_signature",
    "warehouse_days",
]
