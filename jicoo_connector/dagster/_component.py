"""``JicooComponent``: one Jicoo organization in a Dagster project, declared in a defs.yaml
(``dg scaffold defs jicoo_connector.dagster.JicooComponent acme``). It calls
``build_jicoo_definitions``; its attributes are that factory's arguments."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, cast

import dagster as dg
from pydantic import BaseModel, Field

from jicoo_connector.config import organization_name
from jicoo_connector.dagster._factory import (
    JicooSettings,
    build_jicoo_definitions,
    default_data_root,
)

# "{{ env.ACME_JICOO_API_KEY }}" or "{{ env('ACME_JICOO_API_KEY') }}": Dagster's own template
# syntax for a variable. Read here as the variable's *name*, so Dagster reads the value at run
# time and the UI shows only the name.
_ENV_TEMPLATE = re.compile(
    r"\{\{\s*env(?:\.(?P<attr>[A-Za-z_]\w*)|\(\s*(?P<q>['\"])(?P<call>[A-Za-z_]\w*)(?P=q)\s*\))\s*\}\}"
)
# Settings that name a local file or folder: relative ones are read from the project's root.
_PATH_SETTINGS = (
    "ca_bundle",
    "duckdb_path",
    "ledger_path",
    "apply_log_root",
    "changeset_inbox",
    "webhook_db",
    "warehouse_root",
)


def _env_var(context: dg.ResolutionContext, raw: str) -> str:
    """``{{ env.NAME }}`` -> ``dg.EnvVar("NAME")``; anything else as written (the factory
    refuses a key, or a URL with a password, written out)."""
    found = _ENV_TEMPLATE.fullmatch(raw.strip())
    if found:
        return dg.EnvVar(found["attr"] or found["call"])
    return raw


def _secret(description: str) -> dg.Resolver:
    return dg.Resolver(
        _env_var, model_field_type=str, inject_before_resolve=False, description=description
    )


def _described(description: str) -> dg.Resolver:
    resolver: dg.Resolver = dg.Resolver.default(description=description)
    return resolver


class JicooScaffoldParams(BaseModel):
    organization: str | None = Field(
        default=None, description="The organization's short name; default: the folder's name."
    )


def _scaffold_yaml(type_name: str, organization: str) -> str:
    variable = f"{organization.upper()}_JICOO_API_KEY"
    return (
        f"type: {type_name}\n\n"
        "attributes:\n"
        "  # A short name. It prefixes asset keys (jicoo/<organization>/bookings), jobs,\n"
        "  # schedules, sensors, resource keys, the group and the concurrency pool.\n"
        f"  organization: {organization}\n"
        f"  # Set {variable} wherever Dagster runs (code server, daemon, runs):\n"
        "  # Dagster reads it when a run starts; the UI shows only the variable's name.\n"
        f'  api_key: "{{{{ env.{variable} }}}}"\n'
        "  # Its Parquet tables, DuckDB file, ledger, apply log, change-set inbox and webhook\n"
        "  # events, relative to the project's root. Every other attribute has a default:\n"
        f"  # `dg utils inspect-component {type_name}` lists them.\n"
        f"  data_root: {default_data_root(organization)}\n"
    )


class JicooScaffolder(dg.Scaffolder[JicooScaffoldParams]):
    """Writes a defs.yaml that loads once the key's variable is set."""

    @classmethod
    def get_scaffold_params(cls) -> type[JicooScaffoldParams]:
        return JicooScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[JicooScaffoldParams]) -> None:
        folder = re.sub(r"[^a-z0-9_]", "_", request.target_path.name.lower())
        # The folder's name unless `--organization NAME` gives one.
        organization = organization_name(
            request.params.organization or folder, f"scaffolding {request.target_path}"
        )
        if request.scaffold_format != "yaml":
            from dagster.components.component_scaffolding import scaffold_component

            scaffold_component(request, {"organization": organization})
            return
        text = _scaffold_yaml(request.type_name, organization)
        if request.append:  # another document in an existing defs.yaml (the target itself)
            with request.target_path.open("a", encoding="utf-8") as existing:
                existing.write(f"---\n{text}")
            return
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")


@dg.scaffold_with(JicooScaffolder)
@dataclass
class JicooComponent(dg.Component, dg.Resolvable):
    """One Jicoo organization in your Dagster project: its bookings, contacts and snapshot
    tables as partitioned Parquet assets, their load into a warehouse (DuckDB by default),
    write-back of reschedules and cancellations from CSV change sets, exactly once, and the
    jobs, schedules and sensors that keep them fresh.

    Start with ``dg scaffold defs jicoo_connector.dagster.JicooComponent acme``, set
    ``ACME_JICOO_API_KEY`` where Dagster runs, and check with ``dg check defs``. Everything the
    organization makes carries its name: assets ``jicoo/acme/<table>`` in the group
    ``jicoo_acme``, jobs ``jicoo_acme_daily_tables``..., the concurrency pool
    ``jicoo_api_acme`` (one API key, one rate limit). Add one component per organization.
    Only ``organization`` and ``api_key`` are required; the rest default to the
    connector's documented settings.
    """

    organization: Annotated[
        str,
        _described(
            "A short name (lower-case letters, digits, _). It prefixes the asset keys "
            "(jicoo/<organization>/bookings), the jobs, schedules, sensors and resource keys, "
            "the group and the concurrency pool jicoo_api_<organization>."
        ),
    ]
    api_key: Annotated[
        str,
        _secret(
            'The API key, named from the environment: "{{ env.ACME_JICOO_API_KEY }}". Dagster '
            "reads it when a run starts; the UI shows only the variable's name. A key written "
            "out here is refused."
        ),
    ]
    data_root: Annotated[
        str | None,
        _described(
            "The folder of the organization's Parquet tables, DuckDB file, ledger, apply log, "
            "change-set inbox and webhook events (each overridable below), relative to the "
            "project's root. Default: data/jicoo/<organization>."
        ),
    ] = None
    tables: Annotated[
        list[str] | None,
        _described(
            "The tables to extract (default: all). booking_contacts needs bookings, whose "
            "listing it reads."
        ),
    ] = None
    schedules: Annotated[
        bool,
        _described("Add the daily refresh, weekly sweep and daily snapshots schedules."),
    ] = True
    changeset_inbox_sensor: Annotated[
        bool,
        _described(
            "Add the sensor that applies each CSV dropped in the change-set inbox (running "
            "by default)."
        ),
    ] = True
    booking_events_sensor: Annotated[
        bool,
        _described(
            "Add the sensor that refreshes the days recorded webhook events touch (running by "
            "default; it spends no request until events are recorded)."
        ),
    ] = True
    base_url: Annotated[
        str | None, _described("The API's origin. Default https://api.jicoo.com.")
    ] = None
    rate_limit: Annotated[
        float | None,
        _described("The key's request budget, per second (default 10), spent one step at a time."),
    ] = None
    burst: Annotated[int | None, _described("Requests allowed at once (default 20).")] = None
    request_deadline: Annotated[
        float | None,
        _described("Seconds one request may take in all (default 60; resent once)."),
    ] = None
    proxy_url: Annotated[
        str | None,
        _secret(
            'The proxy, http://[user:password@]host:port; "{{ env.NAME }}" when it holds a '
            "password. Default: HTTPS_PROXY, NO_PROXY and the like."
        ),
    ] = None
    ca_bundle: Annotated[
        str | None, _described("A PEM file of the CAs to trust instead of certifi's.")
    ] = None
    tls_trust: Annotated[
        str | None,
        _described("certifi (default), or system: the operating system's store (company CAs)."),
    ] = None
    timezone: Annotated[
        str | None,
        _described("The IANA zone whose calendar days partition bookings (default Asia/Tokyo)."),
    ] = None
    partition_start: Annotated[
        str | None, _described("The first daily partition, YYYY-MM-DD (default 2025-01-01).")
    ] = None
    future_days: Annotated[
        int | None, _described("Days after today that have partitions (default 30).")
    ] = None
    refresh_past_days: Annotated[
        int | None, _described("Days back the daily refresh re-extracts (default 7).")
    ] = None
    refresh_future_days: Annotated[
        int | None, _described("Days ahead the daily refresh re-extracts (default 14).")
    ] = None
    sweep_past_days: Annotated[
        int | None, _described("Days back the weekly sweep re-extracts (default 90).")
    ] = None
    warehouse_root: Annotated[
        str | None,
        _described("The Parquet root: a folder or a URI such as s3://bucket/acme."),
    ] = None
    warehouse_url: Annotated[
        str | None,
        _secret(
            "Where the tables load: postgresql://, snowflake://, bigquery://PROJECT/DATASET or "
            'a DuckDB file; "{{ env.NAME }}" when it holds a password. Default: duckdb_path.'
        ),
    ] = None
    warehouse_password: Annotated[
        str | None,
        _secret('The warehouse password when the URL has none: "{{ env.NAME }}".'),
    ] = None
    duckdb_path: Annotated[
        str | None, _described("The DuckDB file when there is no warehouse_url.")
    ] = None
    ledger_path: Annotated[str | None, _described("The write-back ledger's SQLite file.")] = None
    ledger_url: Annotated[
        str | None,
        _secret(
            'A PostgreSQL ledger shared by every worker, "{{ env.NAME }}"; wins over ledger_path.'
        ),
    ] = None
    apply_log_root: Annotated[str | None, _described("The apply_log Parquet table's folder.")] = (
        None
    )
    changeset_inbox: Annotated[
        str | None, _described("The folder whose CSV change sets the inbox sensor applies.")
    ] = None
    webhook_db: Annotated[
        str | None,
        _described("The webhook event store the receiver writes and the sensor reads (SQLite)."),
    ] = None
    webhook_db_url: Annotated[
        str | None,
        _secret(
            "A PostgreSQL webhook event store shared by several receivers, "
            '"{{ env.NAME }}" (it holds a password); wins over webhook_db.'
        ),
    ] = None
    webhook_interval_s: Annotated[
        int | None,
        _described("Seconds between the booking-events sensor's ticks (default 5)."),
    ] = None

    def _settings(self, project_root: Path) -> JicooSettings:
        settings: dict[str, object] = {}
        for name in JicooSettings.__annotations__:
            value = getattr(self, name)
            if name in _PATH_SETTINGS and isinstance(value, str) and "://" not in value:
                value = str(project_root / value)  # an absolute value stays as it is
            settings[name] = value
        return cast("JicooSettings", settings)  # the same names, checked by the factory

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        root = context.project_root
        data_root = self.data_root or default_data_root(self.organization)
        return build_jicoo_definitions(
            self.organization,
            api_key=cast("dg.EnvVar", self.api_key),  # the factory refuses anything else
            data_root=str(root / data_root),
            tables=self.tables,
            schedules=self.schedules,
            changeset_inbox_sensor=self.changeset_inbox_sensor,
            booking_events_sensor=self.booking_events_sensor,
            **self._settings(root),
        )
