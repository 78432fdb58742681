"""The Jicoo API client: AsyncJicooClient (the core), JicooClient (sync facade), paging reports
and the shared rate limiter. Imports nothing of tables, extract, storage, changes or sandbox.

Its settings are ``jicoo_connector.settings.Settings``. ``client.arrow_envelope`` (the list
envelope read into Arrow, for page decoders) is a public module of its own, so that importing
the client does not import pyarrow; the other modules inside are private.
"""

from jicoo_connector.client._api import AsyncJicooClient, JicooClient
from jicoo_connector.client._paginate import Page, PageDecoder, Prefix
from jicoo_connector.client._ratelimit import RateLimiter, reset_shared_limiters, shared_limiter
from jicoo_connector.client._report import FetchReport, Listing, PagedListing

__all__ = [
    "AsyncJicooClient",
    "FetchReport",
    "JicooClient",
    "Listing",
    "Page",
    "PageDecoder",
    "PagedListing",
    "Prefix",
    "RateLimiter",
    "reset_shared_limiters",
    "shared_limiter",
]
