"""jicoo-connector: a Dagster-free library for the Jicoo API (client, tables, write-back).

Each flow has one entry point, exported from its package's top:

- extract: ``jicoo_connector.extract.extract_range`` (API -> Parquet partitions);
- load: ``jicoo_connector.warehouse.load_warehouse`` (Parquet -> the warehouse);
- plan and apply: ``jicoo_connector.changes.run_changeset`` (a change-set file), or
  ``plan_changeset`` and ``apply_changeset`` (a parsed one);
- receive: ``jicoo_connector.webhooks.create_app`` / ``serve`` (the extra ``[webhooks]``).

The settings: ``jicoo_connector.config.ConnectorConfig`` (every ``JICOO_*`` variable; the only
reader of the environment) and the client's ``jicoo_connector.settings.Settings``. Every error
is in ``jicoo_connector.errors``, its one import path. Modules whose name starts with ``_`` are
private.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
