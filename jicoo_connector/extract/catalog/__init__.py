"""The built-in tables, one module each (``catalog.<table>``): its schema, key, checks,
reshaping, the endpoints it calls and its fetcher, in one declaration; ``bookings`` also holds
``BOOKINGS_FEED``, the listing every bookings-based day table is made from. ``BUILT_IN`` lists the
tables in the order the registry (``extract/_registry.py``) registers them when it is imported.
A module here imports nothing of the registry (the registry imports the catalog)."""

from jicoo_connector.extract.catalog.availability_calendars import AVAILABILITY_CALENDARS
from jicoo_connector.extract.catalog.available_slots import AVAILABLE_SLOTS
from jicoo_connector.extract.catalog.booking_contacts import BOOKING_CONTACTS
from jicoo_connector.extract.catalog.bookings import BOOKINGS
from jicoo_connector.extract.catalog.event_types import EVENT_TYPES
from jicoo_connector.extract.catalog.schedules import SCHEDULES
from jicoo_connector.extract.catalog.users import USERS
from jicoo_connector.extract.sources import TableSource

__all__ = ["BUILT_IN"]

BUILT_IN: tuple[TableSource, ...] = (
    BOOKINGS,
    BOOKING_CONTACTS,
    SCHEDULES,
    AVAILABILITY_CALENDARS,
    AVAILABLE_SLOTS,
    EVENT_TYPES,
    USERS,
)
