"""The Jicoo API client: AsyncJicooClient (the core), JicooClient (sync facade), paging reports
and the shared rate limiter. Imports nothing of tables, extract, storage, changes or sandbox.

Its settings are ``jicoo_connector.settings.Settings``. ``client.arrow_envelope`` (the list
envelope read into Arrow, for page decoders) is a public module of its own, so that importing
the client does not import pyarrow; the other modules inside are private.
"""

import sys


def _import_httpx_without_its_command_line() -> None:
    """Import httpx without ``httpx._main``, its command-line client, which imports rich, click
    and pygments (about 80 modules, a third of httpx's import CPU) whenever they are installed
    (Dagster brings them). ``httpx.main`` still runs that client: it imports it when called."""
    if "httpx" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # None: "not importable"
    try:
        import httpx
    finally:
        del sys.modules["httpx._main"]

    def main(*args: object, **kwargs: object) -> object:
        from httpx._main import main as command_line

        return command_line(*args, **kwargs)

    httpx.main = main  # type: ignore[assignment]  # a click Command; this calls one


_import_httpx_without_its_command_line()

from jicoo_connector.client._api import AsyncJicooClient, JicooClient  # noqa: E402
from jicoo_connector.client._paginate import Page, PageDecoder, Prefix  # noqa: E402
from jicoo_connector.client._ratelimit import RateLimiter, reset_shared_limiters, shared_limiter  # noqa: E402
from jicoo_connector.client._report import FetchReport, Listing, PagedListing  # noqa: E402

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
