"""The one configuration front door: every ``JICOO_*`` variable, its default and its parser.

The only module of the library that reads the environment. ``ConnectorConfig.from_env()``
reads it when called (never at import), so the CLI, the Dagster code location and the demo
all see the same values; the client's ``Settings``, the warehouse's password, the ledger's URL
and the webhook secrets go on from here as arguments. Precedence: an explicit
override (a CLI flag) beats the environment, which beats the default spelled here.

Adding a setting is one field below (``setting(...)``) plus a row in the README's settings
table; a field whose name is also a ``Settings`` field reaches the client on its own.
"""

import dataclasses
import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jicoo_connector._postgres import POSTGRES_SCHEMES
from jicoo_connector.errors import ConfigError
from jicoo_connector.receiver_limits import ReceiverLimits
from jicoo_connector.redaction import UNPARSEABLE_HINT, SecretURL
from jicoo_connector.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_BURST,
    DEFAULT_RATE_LIMIT,
    DEFAULT_REQUEST_DEADLINE,
    DEFAULT_TIMEZONE,
    DEFAULT_TLS_TRUST,
    ApiKey,
    Settings,
    checked_proxy_url,
    checked_tls_trust,
)

__all__ = [
    "DATA_ROOT",
    "ORGANIZATION_PATTERN",
    "ConnectorConfig",
    "SettingSpec",
    "organization_name",
    "organization_variable",
    "parse_date",
    "parse_organization",
    "parse_zone",
    "read_organization_variable",
]

T = TypeVar("T")
# The webhook receiver's defaults, held where its limits are declared.
RECEIVER = ReceiverLimits()

# The folder every default path of a setting lies under (``data/ledger.sqlite``...): an
# organization's own data root takes its place (``ConnectorConfig.with_data_root``).
DATA_ROOT = "data"
# An organization's name becomes part of Dagster names (jobs, pools, resource keys, asset keys),
# which allow letters, digits and underscores; one case, so that names never differ by it alone.
ORGANIZATION_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """How one field is read: its variable, its parser (raises ``ValueError`` with the reason)
    and a short description (CLI ``--help``)."""

    env: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


def setting(env: str, default: T, parse: Callable[[str], T], help: str, secret: bool = False) -> T:
    spec = SettingSpec(env=env, parse=parse, help=help, secret=secret)
    # A secret stays out of the dataclass repr, so a logged config never shows it.
    return field(default=default, metadata={"spec": spec}, repr=not secret)


def parse_zone(text: str) -> str:
    name = text.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not an IANA time zone (for example Asia/Tokyo)") from None
    return name


def parse_organization(text: str) -> str:
    """A short organization name: lower-case letters, digits and ``_``, starting with a letter.

    >>> parse_organization("acme_prod")
    'acme_prod'
    """
    name = text.strip()
    if not ORGANIZATION_PATTERN.fullmatch(name):
        raise ValueError(
            f"{text!r} is not an organization name: use 1-40 lower-case letters, digits and _, "
            "starting with a letter (for example acme or acme_prod)"
        )
    return name


def organization_name(text: str, where: str) -> str:
    """``parse_organization`` for a name given in code or on a command line: a ``ConfigError``
    that says ``where`` it came from."""
    try:
        return parse_organization(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def organization_variable(organization: str, variable: str) -> str:
    """An organization's own copy of a variable: ``acme`` + ``JICOO_WEBHOOK_SECRET`` ->
    ``ACME_JICOO_WEBHOOK_SECRET`` (the name the README's examples give each organization)."""
    return f"{parse_organization(organization).upper()}_{variable}"


def read_organization_variable(
    organization: str, variable: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The value of ``organization_variable(organization, variable)``, read now (None: unset)."""
    value = (os.environ if environ is None else environ).get(
        organization_variable(organization, variable), ""
    )
    return value.strip() or None


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _number(kind: Callable[[str], T], minimum: float, what: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not {what}") from None
        if value < minimum:  # type: ignore[operator]
            raise ValueError(f"{text!r} is not {what}")
        return value

    return parse


def _api_key(text: str) -> ApiKey:
    try:
        return ApiKey(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("it is empty")
    return text.strip()


def _secret_location(text: str) -> str:
    """A path, or a URL that may carry a password: refused (never quoted back) when a driver
    could read it differently from us."""
    value = _text(text)
    if "://" in value and not SecretURL.parse(value).parseable:
        raise ValueError(UNPARSEABLE_HINT)
    return value


def _postgres_url(text: str) -> str:
    # Never quoted back: the URL may carry a password.
    value = _secret_location(text)
    if not value.startswith(POSTGRES_SCHEMES):
        raise ValueError("is not a postgresql:// URL")
    return value


_positive_float = _number(float, 1e-9, "a number above 0")
_positive_int = _number(int, 1, "a whole number of at least 1")
_days = _number(int, 0, "a whole number of days (0 or more)")


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """Every documented setting. Build with ``ConnectorConfig.from_env(**overrides)``.

    >>> ConnectorConfig.from_env({}, timezone="Europe/Paris").timezone
    'Europe/Paris'
    """

    organization: str = setting(
        "JICOO_ORGANIZATION",
        "default",
        parse_organization,
        "organization name (Dagster: jicoo/<organization>/<table>, jicoo_<organization>_* names)",
    )
    api_key: ApiKey | None = setting(
        "JICOO_API_KEY", None, _api_key, "the API key (required to talk to the API)", secret=True
    )
    base_url: str = setting("JICOO_BASE_URL", DEFAULT_BASE_URL, _text, "API origin")
    rate_limit: float = setting(
        "JICOO_RATE_LIMIT", DEFAULT_RATE_LIMIT, _positive_float, "requests per second"
    )
    burst: int = setting("JICOO_BURST", DEFAULT_BURST, _positive_int, "token bucket size")
    request_deadline: float = setting(
        "JICOO_REQUEST_DEADLINE", DEFAULT_REQUEST_DEADLINE, _positive_float, "seconds per request"
    )
    # A proxy URL may carry a password: secret, and Dagster gets it by EnvVar.
    proxy_url: str | None = setting(
        "JICOO_PROXY_URL",
        None,
        checked_proxy_url,
        "proxy, overriding HTTPS_PROXY etc.",
        secret=True,
    )
    ca_bundle: str | None = setting("JICOO_CA_BUNDLE", None, _text, "PEM file of CAs to trust")
    tls_trust: str = setting(
        "JICOO_TLS_TRUST", DEFAULT_TLS_TRUST, checked_tls_trust, "certifi or system"
    )
    timezone: str = setting(
        "JICOO_TIMEZONE", DEFAULT_TIMEZONE, parse_zone, "IANA zone of the calendar days"
    )
    partition_start: dt.date = setting(
        "JICOO_PARTITION_START", dt.date(2025, 1, 1), parse_date, "first daily partition"
    )
    future_days: int = setting("JICOO_FUTURE_DAYS", 30, _days, "partitions ahead of today")
    refresh_past_days: int = setting("JICOO_REFRESH_PAST_DAYS", 7, _days, "daily refresh, back")
    refresh_future_days: int = setting(
        "JICOO_REFRESH_FUTURE_DAYS", 14, _days, "daily refresh, ahead"
    )
    sweep_past_days: int = setting("JICOO_SWEEP_PAST_DAYS", 90, _days, "weekly sweep, back")
    warehouse_root: str = setting(
        "JICOO_WAREHOUSE_ROOT", "data/warehouse", _text, "Parquet root: a path or URI"
    )
    # A URL may hold a password: secret, so it is never shown (and Dagster gets it by EnvVar).
    warehouse_url: str | None = setting(
        "JICOO_WAREHOUSE_URL", None, _secret_location, "warehouse URL or DuckDB path", secret=True
    )
    warehouse_password: str | None = setting(
        "JICOO_WAREHOUSE_PASSWORD", None, _text, "password when the URL has none", secret=True
    )
    duckdb_path: str = setting(
        "JICOO_DUCKDB_PATH", "data/warehouse.duckdb", _text, "DuckDB file when no URL is set"
    )
    ledger_path: str = setting("JICOO_LEDGER_PATH", "data/ledger.sqlite", _text, "SQLite ledger")
    # A postgresql:// URL may hold a password: secret, and Dagster gets it by EnvVar.
    ledger_url: str | None = setting(
        "JICOO_LEDGER_URL",
        None,
        _secret_location,
        "PostgreSQL ledger URL (wins over the file)",
        secret=True,
    )
    apply_log_root: str = setting(
        "JICOO_APPLY_LOG_ROOT", "data/apply_log", _text, "apply_log Parquet table root"
    )
    changeset_inbox: str = setting(
        "JICOO_CHANGESET_INBOX", "data/changesets/inbox", _text, "change-set inbox folder"
    )
    webhook_secret: str | None = setting(
        "JICOO_WEBHOOK_SECRET", None, _text, "webhook signing secrets, comma-separated", secret=True
    )
    webhook_db: str = setting(
        "JICOO_WEBHOOK_DB", "data/webhook_events.sqlite", _text, "webhook event store (SQLite)"
    )
    # A postgresql:// URL may hold a password: secret, and Dagster gets it by EnvVar.
    webhook_db_url: str | None = setting(
        "JICOO_WEBHOOK_DB_URL", None, _postgres_url, "PostgreSQL webhook event store URL "
        "(wins over the file)", secret=True,
    )  # fmt: skip
    webhook_interval_s: int = setting(
        "JICOO_WEBHOOK_INTERVAL_S", 5, _positive_int, "webhook sensor interval, seconds"
    )
    # The receiver's bounds (jicoo webhook serve): what one sender, or a thousand, may hold.
    webhook_max_connections: int = setting(
        "JICOO_WEBHOOK_MAX_CONNECTIONS",
        RECEIVER.max_connections,
        _positive_int,
        "receiver: open connections",
    )
    webhook_max_header_bytes: int = setting(
        "JICOO_WEBHOOK_MAX_HEADER_BYTES",
        RECEIVER.max_header_bytes,
        _positive_int,
        "receiver: request head bytes",
    )
    webhook_max_headers: int = setting(
        "JICOO_WEBHOOK_MAX_HEADERS", RECEIVER.max_headers, _positive_int, "receiver: header fields"
    )
    webhook_header_timeout_s: float = setting(
        "JICOO_WEBHOOK_HEADER_TIMEOUT_S",
        RECEIVER.header_timeout_s,
        _positive_float,
        "receiver: seconds for a head",
    )
    webhook_body_timeout_s: float = setting(
        "JICOO_WEBHOOK_BODY_TIMEOUT_S",
        RECEIVER.body_timeout_s,
        _positive_float,
        "receiver: seconds for a body",
    )
    webhook_keep_alive_s: int = setting(
        "JICOO_WEBHOOK_KEEP_ALIVE_S",
        RECEIVER.keep_alive_s,
        _positive_int,
        "receiver: idle keep-alive, seconds",
    )
    webhook_max_body_bytes: int = setting(
        "JICOO_WEBHOOK_MAX_BODY_BYTES",
        RECEIVER.max_body_bytes,
        _positive_int,
        "receiver: body bytes",
    )

    def __post_init__(self) -> None:
        # Values given in code (not parsed from text) get the same checks as the environment's.
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str) and item.name != "base_url":
                _checked(item, value)

    @classmethod
    def specs(cls) -> dict[str, SettingSpec]:
        """Field name -> its spec, in declaration order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> "ConnectorConfig":
        """Read every variable now; ``overrides`` (None = not given) win over the environment.

        A value that cannot work raises ``ConfigError`` naming the variable and the reason.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in dataclasses.fields(cls):
            raw = env.get(item.metadata["spec"].env, "")
            if raw.strip():
                values[item.name] = _checked(item, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    def settings(self, **overrides: object) -> Settings:
        """The client's ``Settings``: every field whose name ``Settings`` also has."""
        if self.api_key is None:
            raise ConfigError(
                "JICOO_API_KEY is not set: export your Jicoo API key (nothing was sent)"
            )
        shared = {f.name for f in dataclasses.fields(Settings)}
        values: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in shared
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def receiver_limits(self) -> ReceiverLimits:
        """The webhook receiver's bounds: every ``webhook_*`` field ``ReceiverLimits`` has."""
        return ReceiverLimits(
            **{
                name: getattr(self, f"webhook_{name}")
                for name in ReceiverLimits.__dataclass_fields__
            }
        )

    def to_env(self) -> dict[str, str]:
        """Each non-secret setting as its variable would spell it (for a child process)."""
        out: dict[str, str] = {}
        for item in dataclasses.fields(self):
            spec: SettingSpec = item.metadata["spec"]
            value = getattr(self, item.name)
            if not spec.secret and value is not None:
                out[spec.env] = value.isoformat() if isinstance(value, dt.date) else str(value)
        return out

    def warehouse(self) -> str:
        """Where the tables load: ``JICOO_WAREHOUSE_URL``, else the ``JICOO_DUCKDB_PATH`` file."""
        return self.warehouse_url or self.duckdb_path

    def ledger_location(self) -> str:
        """The ledger: ``JICOO_LEDGER_URL`` (PostgreSQL), else the ``JICOO_LEDGER_PATH`` file."""
        return self.ledger_url or self.ledger_path

    def webhook_store(self) -> str:
        """The webhook events: ``JICOO_WEBHOOK_DB_URL`` (PostgreSQL), else the file."""
        return self.webhook_db_url or self.webhook_db

    def with_data_root(self, root: str) -> "ConnectorConfig":
        """The paths still at their defaults (``data/...``) moved under ``root`` instead:
        ``data/ledger.sqlite`` becomes ``<root>/ledger.sqlite``. Paths set otherwise stay."""
        prefix = f"{DATA_ROOT}/"
        moved = {
            item.name: f"{root.rstrip('/')}/{item.default.removeprefix(prefix)}"
            for item in dataclasses.fields(self)
            if isinstance(item.default, str)
            and item.default.startswith(prefix)
            and getattr(self, item.name) == item.default
        }
        return dataclasses.replace(self, **moved)  # type: ignore[arg-type]

    def path(self, name: str) -> Path:
        """A path-valued setting as a ``Path``."""
        return Path(str(getattr(self, name)))


def _checked(item: "dataclasses.Field[Any]", raw: str) -> object:
    spec: SettingSpec = item.metadata["spec"]
    try:
        return spec.parse(raw)
    except ValueError as exc:
        shown = "" if spec.secret else f"={raw!r}"
        raise ConfigError(f"{spec.env}{shown}: {exc}") from None
