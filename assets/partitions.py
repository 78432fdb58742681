"""The daily partitions of bookings and contacts: a calendar day in one IANA zone.

Built from a ``ConnectorConfig`` (``JICOO_TIMEZONE``, ``JICOO_PARTITION_START``,
``JICOO_FUTURE_DAYS``: days after today that already have partitions, since bookings are made
ahead) when the code location loads, never at import.
"""

import dagster as dg

from jicoo_connector.config import ConnectorConfig


def daily_partitions(config: ConnectorConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=config.partition_start.isoformat(),
        timezone=config.timezone,
        end_offset=config.future_days,
    )
