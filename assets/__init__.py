"""The Dagster code location of jicoo-connector: wiring and metadata; logic lives in the library."""
