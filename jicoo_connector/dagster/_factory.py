"""``build_jicoo_definitions``: everything one Jicoo organization needs in Dagster, from one
call (the Component's ``build_defs`` calls it too). No module-level Dagster state: each call
makes new definitions, and two organizations' definitions share no name."""

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TypedDict
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
from typing_extensions import Unpack

from jicoo_connector.config import ConnectorConfig
from jicoo_connector.dagster._automation import build_extract_jobs, build_schedules
from jicoo_connector.dagster._extract import build_extract_assets
from jicoo_connector.dagster._names import NAMESPACE, JicooNames
from jicoo_connector.dagster._resources import JicooResource, WarehouseResource, WriteBackResource
from jicoo_connector.dagster._setup import OrganizationSetup, chosen_tables
from jicoo_connector.dagster._warehouse import build_warehouse_asset
from jicoo_connector.dagster._webhooks import (
    build_booking_events_sensor,
    build_webhook_refresh_job,
)
from jicoo_connector.dagster._writeback import (
    build_apply_job,
    build_apply_log_asset,
    build_inbox_sensor,
)
from jicoo_connector.errors import ConfigError

# Settings that may hold a password: given as dg.EnvVar, so that the UI shows a variable's name.
SECRET_SETTINGS = frozenset(
    {"proxy_url", "warehouse_url", "warehouse_password", "ledger_url", "webhook_db_url"}
)
# ConnectorConfig fields that are not settings of an organization's definitions: the name and
# key are arguments of their own, and the webhook secret is the receiver's (Dagster never sees
# a delivery; `jicoo webhook serve` reads it).
NOT_SETTINGS = frozenset({"organization", "api_key", "webhook_secret"})


class JicooSettings(TypedDict, total=False):
    """The settings ``build_jicoo_definitions`` takes by keyword, each optional (absent or
    None: the README's settings table). ``JicooComponent``'s attributes of the same names
    say what each sets. ``proxy_url``, ``warehouse_url``, ``warehouse_password``,
    ``ledger_url`` and ``webhook_db_url`` take a ``dg.EnvVar`` (a literal is refused if it
    holds a password)."""

    base_url: str | None
    rate_limit: float | None
    burst: int | None
    request_deadline: float | None
    proxy_url: str | None
    ca_bundle: str | None
    tls_trust: str | None
    timezone: str | None
    partition_start: str | dt.date | None
    future_days: int | None
    refresh_past_days: int | None
    refresh_future_days: int | None
    sweep_past_days: int | None
    warehouse_root: str | None
    warehouse_url: str | None
    warehouse_password: str | None
    duckdb_path: str | None
    ledger_path: str | None
    ledger_url: str | None
    apply_log_root: str | None
    changeset_inbox: str | None
    webhook_db: str | None
    webhook_db_url: str | None
    webhook_interval_s: int | None


def default_data_root(organization: str) -> str:
    """Where an organization's files go when nothing says otherwise: its own folder."""
    return f"data/{NAMESPACE}/{organization}"


def _holds_password(url: str) -> bool:
    parts = urlsplit(url)
    query = [name for name, _ in parse_qsl(parts.query)]
    return bool(parts.password) or any("password" in name.lower() for name in query)


def _secret(name: str, value: str | None) -> str | None:
    """``value`` as a resource may take it: a dg.EnvVar, or a literal that holds no password."""
    if value is None or isinstance(value, dg.EnvVar):
        return value
    if name == "warehouse_password" or _holds_password(value):
        raise ConfigError(
            f"{name} holds a password: pass it as dg.EnvVar('NAME') (in defs.yaml: "
            f'"{{{{ env.NAME }}}}"), so that the Dagster UI shows the variable, never the value'
        )
    return value


def _parsed(organization: str, name: str, value: object) -> object:
    """A setting given in code, checked by the parser its variable has (one set of rules)."""
    spec = ConnectorConfig.specs()[name]
    if isinstance(value, dg.EnvVar):
        # Read now only to name its kind (duckdb, postgres...); the resource gets the EnvVar.
        text = value.get_value()
        shown = f"dg.EnvVar({value.env_var_name!r})"
    else:
        text = value if isinstance(value, str) else str(value)
        shown = "(a secret)" if name in SECRET_SETTINGS else repr(value)
    if text is None:
        return None
    try:
        return spec.parse(text)
    except ValueError as exc:
        raise ConfigError(f"organization {organization}: {name}={shown}: {exc}") from None


def _require_env_var(organization: str, api_key: object) -> None:
    """The key comes from the environment only: a literal would show in the UI."""
    if not isinstance(api_key, dg.EnvVar):
        variable = f"{organization.upper()}_JICOO_API_KEY"
        raise ConfigError(
            f"organization {organization}: api_key must come from the environment: "
            f'dg.EnvVar({variable!r}) in Python, "{{{{ env.{variable} }}}}" in defs.yaml; '
            "never the key itself, which the Dagster UI would show"
        )


def organization_config(
    organization: str,
    settings: Mapping[str, object],
    *,
    data_root: str | None = None,
    config: ConnectorConfig | None = None,
) -> ConnectorConfig:
    """The organization's settings: ``settings`` over ``config`` (default: the documented
    defaults), paths still at their defaults moved under ``data_root`` (default: its own
    folder, ``data/jicoo/<organization>``, unless ``config`` is given)."""
    unknown = sorted(set(settings) - set(JicooSettings.__annotations__))
    if unknown:
        raise ConfigError(f"organization {organization}: unknown settings {unknown}")
    base = config or ConnectorConfig()
    root = data_root if data_root is not None or config else default_data_root(organization)
    if root is not None:
        base = base.with_data_root(root)
    values = {
        name: _parsed(organization, name, value)
        for name, value in settings.items()
        if value is not None
    }
    return dataclasses.replace(base, organization=organization, **values)  # type: ignore[arg-type]


def _resources(
    names: JicooNames, api_key: dg.EnvVar, config: ConnectorConfig, settings: Mapping[str, object]
) -> dict[str, object]:
    def secret(name: str) -> str | None:
        given = settings.get(name)
        value = getattr(config, name) if given is None else given
        return _secret(name, value if isinstance(value, str) else None)

    return {
        names.api_resource: JicooResource(
            api_key=api_key,
            base_url=config.base_url,
            # The account's budget: each API step (one at a time per pool) paces to it.
            rate_limit=config.rate_limit,
            burst=config.burst,
            request_deadline=config.request_deadline,
            proxy_url=secret("proxy_url"),
            ca_bundle=config.ca_bundle,
            tls_trust=config.tls_trust,
        ),
        names.warehouse_resource: WarehouseResource(
            root=config.warehouse_root,
            duckdb_path=config.duckdb_path,
            url=secret("warehouse_url") or "",
            password=secret("warehouse_password"),
        ),
        names.writeback_resource: WriteBackResource(
            ledger_path=config.ledger_path,
            ledger_url=secret("ledger_url"),
            apply_log_root=config.apply_log_root,
            inbox=config.changeset_inbox,
        ),
    }


def build_jicoo_definitions(
    organization: str,
    *,
    api_key: dg.EnvVar,
    data_root: str | None = None,
    config: ConnectorConfig | None = None,
    tables: Sequence[str] | None = None,
    schedules: bool = True,
    changeset_inbox_sensor: bool = True,
    booking_events_sensor: bool = True,
    **settings: Unpack[JicooSettings],
) -> dg.Definitions:
    """Everything one Jicoo organization needs in Dagster: an asset per table
    (``jicoo/<organization>/<table>``), the warehouse and apply_log assets, the jobs, the
    schedules, the change-set inbox and booking-events sensors, and the resources.

    ``api_key`` is a ``dg.EnvVar``: Dagster reads it when a run starts and the UI shows only
    the variable's name. Files go under ``data_root`` (default ``data/jicoo/<organization>``);
    ``settings`` are those of ``JicooSettings`` (``base_url=``, ``timezone=``...), over
    ``config`` when it is given (for example ``ConnectorConfig.from_env()``). ``tables`` picks
    tables (default all); the switches leave schedules or sensors out. Merge the definitions of
    several organizations with ``dg.Definitions.merge``:

    >>> import dagster as dg
    >>> defs = build_jicoo_definitions("acme", api_key=dg.EnvVar("ACME_JICOO_API_KEY"))
    >>> defs.resolve_job_def("jicoo_acme_daily_tables").name
    'jicoo_acme_daily_tables'
    """
    names = JicooNames(organization)
    _require_env_var(organization, api_key)
    for name in SECRET_SETTINGS:
        _secret(name, settings.get(name))  # type: ignore[arg-type]
    resolved = organization_config(organization, settings, data_root=data_root, config=config)
    setup = OrganizationSetup(names, resolved, chosen_tables(tables))
    apply_job = build_apply_job(names)
    jobs = [*build_extract_jobs(setup), apply_job]
    sensors = [build_inbox_sensor(names, apply_job)] if changeset_inbox_sensor else []
    if setup.day_tables:
        webhook_job = build_webhook_refresh_job(setup)
        jobs.append(webhook_job)
        if booking_events_sensor:
            sensors.append(build_booking_events_sensor(setup, webhook_job))
    return dg.Definitions(
        assets=[
            *build_extract_assets(setup),
            build_warehouse_asset(setup),
            build_apply_log_asset(setup),
        ],
        jobs=jobs,
        schedules=build_schedules(setup) if schedules else [],
        sensors=sensors,
        resources=_resources(names, api_key, resolved, settings),
    )
