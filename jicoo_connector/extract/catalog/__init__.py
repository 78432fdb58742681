"""The built-in tables, one module each: its schema, key, checks, reshaping, the endpoints it
calls and its fetcher, in one declaration. Imported on the first registry lookup
(tables.Registry), which registers them in this order."""

from jicoo_connector.extract.catalog.availability_calendars import AVAILABILITY_CALENDARS
from jicoo_connector.extract.catalog.available_slots import AVAILABLE_SLOTS
from jicoo_connector.extract.catalog.booking_contacts import BOOKING_CONTACTS
from jicoo_connector.extract.catalog.bookings import BOOKINGS, BOOKINGS_FEED
from jicoo_connector.extract.catalog.event_types import EVENT_TYPES
from jicoo_connector.extract.catalog.schedules import SCHEDULES
from jicoo_connector.extract.catalog.users import USERS
from jicoo_connector.extract.sources import register_built_in

__all__ = [
    "AVAILABILITY_CALENDARS",
    "AVAILABLE_SLOTS",
    "BOOKINGS",
    "BOOKINGS_FEED",
    "BOOKING_CONTACTS",
    "EVENT_TYPES",
    "SCHEDULES",
    "USERS",
]

register_built_in(
    [
        BOOKINGS,
        BOOKING_CONTACTS,
        SCHEDULES,
        AVAILABILITY_CALENDARS,
        AVAILABLE_SLOTS,
        EVENT_TYPES,
        USERS,
    ]
)
