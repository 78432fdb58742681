"""FetchReport (what calls cost: requests, retries, re-walks) and Listing (rows plus report).

The report holds plain counters only: no URLs, bodies or keys, so it is safe to log.
"""

from dataclasses import dataclass, fields
from typing import Generic, TypeVar

__all__ = ["FetchReport", "Listing", "PagedListing"]

R = TypeVar("R")


@dataclass
class FetchReport:
    """Counters of one listing, or of a client's whole life (``AsyncJicooClient.report``).

    >>> report = FetchReport(requests=2, pages=2)
    >>> report.merge(FetchReport(requests=1, retries=1))
    >>> report.as_metadata()["requests"]
    3
    """

    requests: int = 0
    pages: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    drift_rewalks: int = 0
    elapsed_s: float = 0.0

    def merge(self, other: "FetchReport") -> None:
        """Add ``other``'s counters to this one (elapsed times add up too)."""
        for spec in fields(self):
            setattr(self, spec.name, getattr(self, spec.name) + getattr(other, spec.name))

    def as_metadata(self) -> dict[str, int | float]:
        """Flat counters for Dagster metadata; ``elapsed_s`` is rounded to milliseconds."""
        values: dict[str, int | float] = {
            spec.name: getattr(self, spec.name) for spec in fields(self)
        }
        values["elapsed_s"] = round(self.elapsed_s, 3)
        return values


@dataclass(frozen=True)
class Listing:
    """Every row of one listing (each exactly once, in the server's order), the server's
    ``totalCount`` and what fetching them cost."""

    records: list[dict[str, object]]
    total_count: int
    report: FetchReport


@dataclass(frozen=True)
class PagedListing(Generic[R]):
    """Every row of one listing (each exactly once), page by page as a PageDecoder made them,
    in the server's order; the server's ``totalCount`` and what fetching them cost."""

    pages: list[R]
    total_count: int
    report: FetchReport
