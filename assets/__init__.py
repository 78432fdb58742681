"""This repository's Dagster code location: one user of ``jicoo_connector.dagster``."""
