"""The daily partitions of bookings and contacts: a calendar day in one IANA zone.

Read once when the code location loads, from the environment (documented in the README):
``JICOO_TIMEZONE`` (default Asia/Tokyo, the service's home market), ``JICOO_PARTITION_START``
(first day, default 2025-01-01) and ``JICOO_FUTURE_DAYS`` (days after today that already have
partitions, default 30: bookings are made ahead).
"""

import os

import dagster as dg

DEFAULT_TIMEZONE = "Asia/Tokyo"
DEFAULT_PARTITION_START = "2025-01-01"
DEFAULT_FUTURE_DAYS = 30

TIMEZONE = os.environ.get("JICOO_TIMEZONE", DEFAULT_TIMEZONE)
FUTURE_DAYS = int(os.environ.get("JICOO_FUTURE_DAYS", str(DEFAULT_FUTURE_DAYS)))

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("JICOO_PARTITION_START", DEFAULT_PARTITION_START),
    timezone=TIMEZONE,
    end_offset=FUTURE_DAYS,
)
