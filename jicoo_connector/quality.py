"""Data-quality rules over extracted Arrow tables; the Dagster asset checks call these."""

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import Enum

import pyarrow as pa

__all__ = [
    "QualityResult",
    "Severity",
    "contacts_reference_bookings",
    "ended_after_started",
    "extra_empty",
    "key_unique_not_null",
    "rows_match_total",
]

EXTRA_COLUMN = "_extra"
# How many offending keys a result carries for a person to look at.
SAMPLE_SIZE = 5


class Severity(Enum):
    ERROR = "error"
    WARN = "warn"


@dataclass(frozen=True)
class QualityResult:
    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, int | str] = field(default_factory=dict)


def _sample(values: Sequence[object]) -> str:
    return ", ".join(str(v) for v in values[:SAMPLE_SIZE])


def key_unique_not_null(table: pa.Table, key_columns: Sequence[str]) -> QualityResult:
    """Every row has the whole key, and no key appears twice."""
    columns = [table.column(name).to_pylist() for name in key_columns]
    keys = list(zip(*columns, strict=True))
    nulls = sum(1 for key in keys if any(part is None for part in key))
    duplicated = [key for key, count in Counter(keys).items() if count > 1]
    passed = nulls == 0 and not duplicated
    return QualityResult(
        name="key_unique_not_null",
        passed=passed,
        severity=Severity.ERROR,
        description=(
            f"{'+'.join(key_columns)} is unique and non-null"
            if passed
            else f"{nulls} rows with a null key, {len(duplicated)} duplicated keys"
        ),
        metadata={
            "null_keys": nulls,
            "duplicated_keys": len(duplicated),
            "sample": _sample(duplicated),
        },
    )


def ended_after_started(
    table: pa.Table, start: str = "started_at", end: str = "ended_at"
) -> QualityResult:
    """Every row ends strictly after it starts."""
    uid_column = "uid" if "uid" in table.column_names else table.column_names[0]
    bad = [
        uid
        for uid, started, ended in zip(
            table.column(uid_column).to_pylist(),
            table.column(start).to_pylist(),
            table.column(end).to_pylist(),
            strict=True,
        )
        if started is None or ended is None or ended <= started
    ]
    return QualityResult(
        name="ended_after_started",
        passed=not bad,
        severity=Severity.ERROR,
        description=f"{len(bad)} rows with {end} <= {start} (or missing)",
        metadata={"bad_rows": len(bad), "sample": _sample(bad)},
    )


def contacts_reference_bookings(contacts: pa.Table, booking_uids: Collection[str]) -> QualityResult:
    """Every contact belongs to a booking of the same partition."""
    known = set(booking_uids)
    orphans = [uid for uid in contacts.column("booking_uid").to_pylist() if uid not in known]
    return QualityResult(
        name="contacts_reference_bookings",
        passed=not orphans,
        severity=Severity.ERROR,
        description=f"{len(orphans)} contacts whose booking is not in the bookings table",
        metadata={"orphans": len(orphans), "sample": _sample(orphans)},
    )


def extra_empty(table: pa.Table) -> QualityResult:
    """No field arrived that the schema does not know (kept in ``_extra``, but worth a look)."""
    with_extra = len(table) - table.column(EXTRA_COLUMN).null_count
    return QualityResult(
        name="extra_empty",
        passed=with_extra == 0,
        severity=Severity.WARN,
        description=f"{with_extra} rows carry fields the schema does not know (see _extra)",
        metadata={"rows_with_extra": with_extra},
    )


def rows_match_total(rows: int, total_count: int | None) -> QualityResult:
    """Rows written equal what the API reported for the window."""
    if total_count is None:
        return QualityResult(
            name="rows_match_total",
            passed=True,
            severity=Severity.ERROR,
            description="the endpoint reports no total; nothing to compare",
            metadata={"rows": rows},
        )
    return QualityResult(
        name="rows_match_total",
        passed=rows == total_count,
        severity=Severity.ERROR,
        description=f"{rows} rows written, the API reported {total_count}",
        metadata={"rows": rows, "total_count": total_count},
    )
