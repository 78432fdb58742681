"""Every error the connector raises, in one tree. Imports nothing else of the package but
``_compat`` (ExceptionGroup on Python 3.10).

JicooError
├── ConfigError                 bad settings or arguments, before any request (a ValueError)
├── APIStatusError              the server answered with a non-2xx status
│   ├── BadRequestError         400
│   ├── AuthenticationError     401 or 403: the API refused the key for this request
│   │   └── PermissionDeniedError   403: the key, or this key for this endpoint (carries it)
│   ├── NotFoundError           404
│   ├── ValidationError         422 (and 402): the server's message is kept
│   ├── RateLimitedError        429 once retries are spent (carries retry_after)
│   └── ServerError             5xx once retries are spent
├── TransportError              no usable answer: connect/read failures, deadline exceeded
├── ProtocolError               an answer we refuse: truncated, too large, hostile JSON,
│   │                           a redirect, an envelope that lies
│   └── PaginationError         pages that never end, repeat, or drift beyond the re-walk bound
├── RecordConversionError       an API record value that does not fit its table column
├── ListingTooLargeError        a listing announced more rows than the caller's max_rows
├── MissingPartitionError       a partition another one is built from was never written
├── ExtractError                partitions of an extract failed (an ExceptionGroup of them)
├── InDoubtError                a write left us and may or may not have taken effect
├── ChangeSetError              a change-set row or file we refuse (row, column, reason)
├── PlanError                   a plan file we cannot use (unreadable, another change set)
├── ApplyIncompleteError        an apply stopped after POSTs left: what was done, what was not
├── LedgerError                 the write-back ledger refuses an operation
│   ├── LedgerBusyError         another applier holds the batch
│   ├── BatchMismatchError      the batch id was used with a different change-set file
│   ├── LedgerNotFoundError     a read found no ledger at the location (nothing created)
│   └── StaleLeaseError         a newer applier took over (fencing epoch)
├── WarehouseError              a warehouse URL, driver or load we refuse (password redacted)
│   └── SchemaChangeError       a column whose type changed (names table, column, both types)
├── WebhookError                a webhook delivery the receiver refuses
│   ├── WebhookSignatureError   missing, malformed, stale or non-matching signature (401)
│   └── WebhookPayloadError     a body that is not a Jicoo event (400)
└── WebhookStoreError           the webhook event store cannot be opened or used (URL redacted)
"""

import datetime as dt
from collections.abc import Mapping, Sequence

from jicoo_connector._compat import ExceptionGroup

__all__ = [
    "APIStatusError",
    "ApplyIncompleteError",
    "AuthenticationError",
    "BadRequestError",
    "BatchMismatchError",
    "ChangeSetError",
    "ConfigError",
    "ExtractError",
    "InDoubtError",
    "JicooError",
    "LedgerBusyError",
    "LedgerError",
    "LedgerNotFoundError",
    "ListingTooLargeError",
    "MissingPartitionError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "PlanError",
    "ProtocolError",
    "RateLimitedError",
    "RecordConversionError",
    "SchemaChangeError",
    "ServerError",
    "StaleLeaseError",
    "TransportError",
    "ValidationError",
    "WarehouseError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "WebhookStoreError",
]


class JicooError(Exception):
    """Root of every error raised by jicoo_connector."""


class ConfigError(JicooError, ValueError):
    """Settings or arguments that cannot work, found before any request is sent (a
    ValueError too, as Python code expects of a bad argument)."""


class APIStatusError(JicooError):
    """The API answered with a status we do not treat as success.

    ``errors`` is the opaque ``errors`` member of the body (never the whole body:
    bodies can hold personal data).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        endpoint: str,
        errors: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.endpoint = endpoint
        self.errors: Mapping[str, object] = dict(errors or {})

    @property
    def server_message(self) -> str | None:
        message = self.errors.get("message")
        return message if isinstance(message, str) else None


class BadRequestError(APIStatusError):
    """400: the request is unacceptable, usually a missing parameter."""


class AuthenticationError(APIStatusError):
    """401 or 403: the API refused the key for this request. Never retried.

    The real API answers 403 to a request without a valid key (``../shared/jicoo-api``,
    "Auth"), so a 403 is a configuration error like a 401 until a request with the same key
    reads something else (``AsyncJicooClient.check_key``)."""


class PermissionDeniedError(AuthenticationError):
    """403: the API refused the key for ``endpoint``: a wrong key, or one that may not read
    this endpoint (the status alone cannot tell). An extract skips the table only when the
    key reads bookings."""


class NotFoundError(APIStatusError):
    """404: the resource does not exist."""


class ValidationError(APIStatusError):
    """422 (or 402): the request is well formed but the server refuses it."""


class RateLimitedError(APIStatusError):
    """429 after the retry budget was spent."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        endpoint: str,
        errors: Mapping[str, object] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, method=method, endpoint=endpoint, errors=errors
        )
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx after the retry budget was spent."""


class TransportError(JicooError):
    """No usable answer arrived: connection failure, timeout or the total deadline."""

    def __init__(self, message: str, *, method: str, endpoint: str) -> None:
        super().__init__(message)
        self.method = method
        self.endpoint = endpoint


class ProtocolError(JicooError):
    """An answer arrived but we refuse it (truncated, oversized, hostile JSON, redirect...)."""

    def __init__(
        self, message: str, *, method: str, endpoint: str, page: int | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.endpoint = endpoint
        self.page = page


class PaginationError(ProtocolError):
    """Paging did not converge: the server lied about totals, repeated pages or kept drifting."""


class InDoubtError(JicooError):
    """A non-idempotent request left and we cannot tell whether it took effect.

    Carries what was sent so a ledger can reconcile by reading the resource back.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        endpoint: str,
        sent_body: Mapping[str, object] | None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.endpoint = endpoint
        self.sent_body: Mapping[str, object] | None = (
            dict(sent_body) if sent_body is not None else None
        )


class ChangeSetError(JicooError):
    """A change-set file or row we refuse, located by row (1-based, header = 1) and column."""

    def __init__(self, reason: str, *, row: int | None = None, column: str | None = None) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)
        self.reason = reason
        self.row = row
        self.column = column


class RecordConversionError(JicooError, ValueError):
    """A record value that does not fit its column; names the table, column and record key."""

    def __init__(self, table: str, column: str, record_key: str, reason: str) -> None:
        super().__init__(f"{table}.{column}: {reason} (record {record_key})")
        self.table = table
        self.column = column
        self.record_key = record_key
        self.reason = reason


class ListingTooLargeError(JicooError):
    """Page 1 announced more rows than the caller's ``max_rows``; no other page was fetched.
    Not an API failure: the caller asked to be told, to list a narrower window instead."""

    def __init__(self, endpoint: str, total_count: int, max_rows: int) -> None:
        super().__init__(f"GET {endpoint}: {total_count} rows, more than max_rows {max_rows}")
        self.total_count = total_count
        self.max_rows = max_rows


class ExtractError(ExceptionGroup[Exception], JicooError):
    """Partitions of an extract failed; the others were written. ``exceptions`` holds each
    failure (its note names the partitions), so ``except JicooError`` catches the whole and
    ``except* TransportError`` a kind of failure. ``message`` is one line: why, and how many
    partitions were written."""

    @property
    def key_refused(self) -> bool:
        """The API refused the key (401, or 403 where it reads no bookings either): a
        configuration error, which no retry mends."""
        return any(isinstance(exc, AuthenticationError) for exc in self.exceptions)


class MissingPartitionError(JicooError):
    """Partitions of ``table`` that another table is built from have not been written."""

    def __init__(self, table: str, values: Sequence[dt.date], hint: str) -> None:
        shown = ", ".join(str(value) for value in values[:5])
        more = f" and {len(values) - 5} more" if len(values) > 5 else ""
        super().__init__(f"{table} has no partition for {shown}{more}: {hint}")
        self.table = table
        self.values = list(values)


class PlanError(JicooError):
    """A plan file we cannot use (unreadable, wrong format, another change set)."""


class ApplyIncompleteError(JicooError):
    """An apply stopped mid-batch after POSTs left (the ledger, the disk or the apply log
    failed): some changes were applied, the rest were not. Carries this run's counts; the
    message says what failed and whether a re-run is safe."""

    def __init__(
        self,
        message: str,
        *,
        applied: int,
        recorded: int,
        unrecorded: int,
        not_attempted: int,
        posts_sent: int,
        rerun_safe: bool,
    ) -> None:
        super().__init__(message)
        self.applied = applied
        self.recorded = recorded
        self.unrecorded = unrecorded
        self.not_attempted = not_attempted
        self.posts_sent = posts_sent
        self.rerun_safe = rerun_safe


class LedgerError(JicooError):
    """The ledger refuses an operation (busy batch, changed file, stale lease, a move the
    write-back state machine does not allow)."""


class LedgerBusyError(LedgerError):
    """Another applier holds this batch."""


class BatchMismatchError(LedgerError):
    """The batch id was used before with a different change-set file."""


class LedgerNotFoundError(LedgerError):
    """A read-only open found no ledger at the location; it created nothing there."""


class StaleLeaseError(LedgerError):
    """A newer applier took over the batch; this applier's writes are refused (fencing)."""


class WarehouseError(JicooError):
    """A warehouse URL, driver or load we refuse; messages never carry the URL's password."""


class SchemaChangeError(WarehouseError):
    """A column's type in the warehouse differs from the table's schema: nothing is loaded."""

    def __init__(self, table: str, column: str, found: str, expected: str) -> None:
        super().__init__(
            f"{table}.{column}: the warehouse column is {found}, the table schema now needs "
            f"{expected}; columns are never altered or dropped by the loader: migrate it "
            f"yourself (or load into a new table/database)"
        )
        self.table = table
        self.column = column
        self.found = found
        self.expected = expected


class WebhookError(JicooError):
    """A webhook delivery the receiver refuses; the message never holds the secret or signature."""


class WebhookSignatureError(WebhookError):
    """The signature header is missing, malformed, too old or matches no configured secret."""


class WebhookPayloadError(WebhookError):
    """A signed body that is not a Jicoo event (not JSON, or no event, uid or createdAt)."""


class WebhookStoreError(JicooError):
    """The webhook event store cannot be opened or used; names it without its password."""
