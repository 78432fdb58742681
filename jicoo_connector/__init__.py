"""jicoo-connector: a Dagster-free library for the Jicoo API (client, tables, write-back)."""

from jicoo_connector.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ChangeSetError,
    ConfigError,
    InDoubtError,
    JicooError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from jicoo_connector.settings import ApiKey, Settings

__all__ = [
    "APIStatusError",
    "ApiKey",
    "AuthenticationError",
    "BadRequestError",
    "ChangeSetError",
    "ConfigError",
    "InDoubtError",
    "JicooError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "ServerError",
    "Settings",
    "TransportError",
    "ValidationError",
]
__version__ = "0.1.0"
