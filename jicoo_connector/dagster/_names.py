"""Every Dagster name of one organization, derived from its short name in one place.

Two organizations in one code location collide in no name: asset keys, the group, ops, jobs,
schedules, sensors, resource keys and the concurrency pool all carry the organization.
"""

from dataclasses import dataclass

import dagster as dg

from jicoo_connector.config import organization_name

# The first part of every asset key, and the kind (UI icon label) of every asset we make.
NAMESPACE = "jicoo"


@dataclass(frozen=True, slots=True)
class JicooNames:
    """The names of one organization's definitions.

    >>> names = JicooNames("acme")
    >>> names.asset_key("bookings").to_user_string(), names.job("daily_tables"), names.pool
    ('jicoo/acme/bookings', 'jicoo_acme_daily_tables', 'jicoo_api_acme')
    """

    organization: str

    def __post_init__(self) -> None:
        organization_name(self.organization, "organization")

    @property
    def prefix(self) -> str:
        """``jicoo_<organization>``: the start of every job, schedule, sensor and resource key."""
        return f"{NAMESPACE}_{self.organization}"

    def asset_key(self, table: str) -> dg.AssetKey:
        """``jicoo/<organization>/<table>`` (``warehouse`` and ``apply_log`` included)."""
        return dg.AssetKey([NAMESPACE, self.organization, table])

    def op(self, table: str) -> str:
        """The op (step) behind ``asset_key(table)``: its path joined by ``__``, as Dagster
        names an ``@asset``'s op; the key of its run config under ``ops``."""
        return "__".join(self.asset_key(table).path)

    @property
    def group(self) -> str:
        """The Dagster group of every asset of the organization."""
        return self.prefix

    @property
    def pool(self) -> str:
        """The concurrency pool of every step that calls the organization's API: one API key,
        one budget, whatever the other organizations do."""
        return f"{NAMESPACE}_api_{self.organization}"

    def job(self, name: str) -> str:
        """``daily_tables``, ``snapshots``, ``apply_changeset``, ``webhook_refresh``."""
        return f"{self.prefix}_{name}"

    def schedule(self, name: str) -> str:
        """``refresh``, ``sweep``, ``snapshots`` -> ``jicoo_<organization>_<name>_schedule``."""
        return f"{self.prefix}_{name}_schedule"

    def sensor(self, name: str) -> str:
        """``changeset_inbox``, ``booking_events`` -> ``jicoo_<organization>_<name>_sensor``."""
        return f"{self.prefix}_{name}_sensor"

    @property
    def api_resource(self) -> str:
        """The resource key of the organization's API account (``JicooResource``)."""
        return self.prefix

    @property
    def warehouse_resource(self) -> str:
        """The resource key of its Parquet root and warehouse (``WarehouseResource``)."""
        return f"{self.prefix}_warehouse"

    @property
    def writeback_resource(self) -> str:
        """The resource key of its ledger, apply log and inbox (``WriteBackResource``)."""
        return f"{self.prefix}_writeback"
