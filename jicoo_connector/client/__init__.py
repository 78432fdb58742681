"""The Jicoo API client: AsyncJicooClient (the core), JicooClient (sync facade), paging reports
and the shared rate limiter. Imports nothing of tables, extract, storage, changes or sandbox.
"""

from jicoo_connector.client._api import AsyncJicooClient, JicooClient
from jicoo_connector.client._paginate import ListingTooLargeError, PageDecoder
from jicoo_connector.client._ratelimit import RateLimiter, reset_shared_limiters, shared_limiter
from jicoo_connector.client._report import FetchReport, Listing, PagedListing

__all__ = [
    "AsyncJicooClient",
    "FetchReport",
    "JicooClient",
    "Listing",
    "ListingTooLargeError",
    "PageDecoder",
    "PagedListing",
    "RateLimiter",
    "reset_shared_limiters",
    "shared_limiter",
]
