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
    DEFAULT_EVENTS_DB,
    EVENTS_DB_ENV,
    EventStore,
    SQLiteEventStore,
    StoredEvent,
    events_db_path,
)

__all__ = [
    "CANCEL_EVENTS",
    "DEFAULT_EVENTS_DB",
    "DEFAULT_TOLERANCE_S",
    "EVENTS_DB_ENV",
    "KNOWN_EVENTS",
    "RESCHEDULE_EVENTS",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "EventStore",
    "RefreshPlan",
    "RefreshRange",
    "SQLiteEventStore",
    "StoredEvent",
    "WebhookEvent",
    "WebhookSecrets",
    "events_db_path",
    "format_instant",
    "parse_event",
    "plan_refresh",
    "verify_signature",
    "warehouse_days",
]
