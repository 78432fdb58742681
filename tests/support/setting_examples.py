"""Each documented setting's variable, and a valid value for it that differs from the default."""

from jicoo_connector.config import ConnectorConfig

__all__ = ["RECEIVER_EXAMPLES", "VARIABLES", "example_value"]

VARIABLES = {spec.env: name for name, spec in ConnectorConfig.specs().items()}


def example_value(env: str) -> str:
    """A valid value different from the default."""
    return {
        "JICOO_API_KEY": "sk_settings_test",
        "JICOO_BASE_URL": "http://127.0.0.1:9",
        "JICOO_RATE_LIMIT": "3.5",
        "JICOO_BURST": "3",
        "JICOO_TIMEZONE": "Europe/Paris",
        "JICOO_PARTITION_START": "2026-01-05",
        "JICOO_FUTURE_DAYS": "9",
        "JICOO_REFRESH_PAST_DAYS": "2",
        "JICOO_REFRESH_FUTURE_DAYS": "4",
        "JICOO_SWEEP_PAST_DAYS": "33",
        "JICOO_LEDGER_URL": "postgresql://ledger:s3cret@127.0.0.1:9/jicoo",
        "JICOO_WEBHOOK_DB_URL": "postgresql://hooks:s3cret@127.0.0.1:9/jicoo",
        "JICOO_WEBHOOK_INTERVAL_S": "7",
        "JICOO_REQUEST_DEADLINE": "7.5",
        "JICOO_PROXY_URL": "http://proxyuser:pw@127.0.0.1:9",
        "JICOO_TLS_TRUST": "system",
        **RECEIVER_EXAMPLES,
        "JICOO_ORGANIZATION": "acme",
    }.get(env, f"/srv/jicoo/{env.lower()}")


# The receiver's bounds, small enough for tests/test_settings_cli.py to see each one act.
RECEIVER_EXAMPLES = {
    "JICOO_WEBHOOK_MAX_CONNECTIONS": "5",
    "JICOO_WEBHOOK_MAX_HEADER_BYTES": "4096",
    "JICOO_WEBHOOK_MAX_HEADERS": "20",
    "JICOO_WEBHOOK_HEADER_TIMEOUT_S": "3.5",
    "JICOO_WEBHOOK_BODY_TIMEOUT_S": "1.5",
    "JICOO_WEBHOOK_KEEP_ALIVE_S": "1",
    "JICOO_WEBHOOK_MAX_BODY_BYTES": "1000",
}
