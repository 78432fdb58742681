"""Data-quality rules over extracted Arrow tables; the Dagster asset checks call these.

Each function is handed the table's ``TableSpec`` (its key and the checks it names): nothing
here looks a table up by name.

The rules read a table. An extract does not read what it wrote back: a ``QualityRecorder``
watches each partition's batches as they are written and keeps only what the rules need (the
key columns, the rows that break a rule, a preview), and ``assess`` runs the rules over what
the partitions of a run kept. The verdicts are those of the rules over the whole written range.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jicoo_connector.errors import ConfigError
from jicoo_connector.tables import EXTRA_COLUMN, TableSpec

__all__ = [
    "RULES",
    "PartitionQuality",
    "QualityRecorder",
    "QualityResult",
    "Severity",
    "assess",
    "check_description",
    "check_names",
    "contacts_reference_bookings",
    "ended_after_started",
    "extra_empty",
    "key_unique_not_null",
    "rows_match_total",
]

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
    # Arrow kernels, not Python tuples: a 120-day sweep holds hundreds of thousands of keys.
    keys = table.select(list(key_columns))
    has_null = pc.is_null(keys.column(0))
    for name in key_columns[1:]:
        has_null = pc.or_(has_null, pc.is_null(keys.column(name)))
    nulls = int(pc.sum(has_null.cast(pa.int64())).as_py() or 0)
    counted = keys.group_by(list(key_columns)).aggregate([([], "count_all")])
    counts = counted.column("count_all")
    duplicated: list[tuple[object, ...]] = []
    # No Python value goes into Arrow here (that would import pandas into an extract).
    if (pc.max(counts).as_py() or 0) > 1:
        duplicated = [
            key
            for key, count in zip(
                zip(*(counted.column(n).to_pylist() for n in key_columns), strict=True),
                counts.to_pylist(),
                strict=True,
            )
            if (count or 0) > 1
        ]
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


def check_description(spec: TableSpec, name: str) -> str:
    """What rule ``name`` asserts about the table ``spec``, in its words (its key columns)."""
    rules = {
        "key_unique_not_null": f"{' + '.join(spec.key_columns)} is present in every row and "
        "never repeats across the materialized partitions.",
        "extra_empty": f"No row carries fields the schema does not know ({EXTRA_COLUMN} is "
        "null). A warning: such fields are kept, but the schema should learn them.",
        "ended_after_started": "Every row has started_at and ended_at, and ends after it starts.",
        "rows_match_total": "Rows written equal what the API's totalCount said the listed days "
        "hold.",
        "contacts_reference_bookings": "Every contact's booking_uid is a booking of the same "
        "day's bookings partition of the same organization.",
    }
    return rules[name]


# Every rule by name: a table's declaration (TableSpec.checks) picks among the optional ones.
RULES = (
    "key_unique_not_null",
    "extra_empty",
    "ended_after_started",
    "rows_match_total",
    "contacts_reference_bookings",
)


def check_names(spec: TableSpec) -> tuple[str, ...]:
    """The rules that apply to the table ``spec`` (the names of its Dagster asset checks): those
    every table gets, then the ones its declaration names (``TableSpec.checks``)."""
    return ("key_unique_not_null", "extra_empty", *spec.checks)


@dataclass(frozen=True, slots=True)
class PartitionQuality:
    """What the rules need of one written partition: its key columns and only the rows that
    break a rule (normally none), plus its first rows for a preview."""

    table: str
    rows: int
    keys: pa.Table
    bad_times: pa.Table | None
    extra_rows: pa.Table
    orphans: pa.Table | None
    preview: pa.Table


class QualityRecorder:
    """Watches the batches of one partition as they are written (``observe`` returns each batch
    unchanged, so it wraps the writer's iterator). ``booking_uids`` are the bookings of the same
    partition: given for contacts, whose rule is that each belongs to one of them.
    """

    def __init__(
        self,
        spec: TableSpec,
        booking_uids: "pa.ChunkedArray[Any] | None" = None,
        preview_rows: int = 5,
    ) -> None:
        self._spec = spec
        self._names = check_names(spec)
        self._booking_uids = booking_uids
        self._preview_rows = preview_rows
        self._rows = 0
        self._keys: list[pa.Table] = []
        self._bad_times: list[pa.Table] = []
        self._extra: list[pa.Table] = []
        self._orphans: list[pa.Table] = []
        self._preview: list[pa.Table] = []

    def observe(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        table = pa.Table.from_batches([batch])
        self._rows += batch.num_rows
        self._keys.append(table.select(list(self._spec.key_columns)))
        if "ended_after_started" in self._names:
            started, ended = table.column("started_at"), table.column("ended_at")
            missing = pc.or_(pc.is_null(started), pc.is_null(ended))
            bad = pc.or_kleene(missing, pc.less_equal(ended, started))
            self._bad_times.append(
                table.select([table.column_names[0], "started_at", "ended_at"]).filter(bad)
            )
        self._extra.append(table.select([EXTRA_COLUMN]).filter(pc.is_valid(table[EXTRA_COLUMN])))
        if "contacts_reference_bookings" in self._names:
            if self._booking_uids is None:
                raise ConfigError("contacts are checked against their bookings' uids: pass them")
            uids = table.select(["booking_uid"])
            known = pc.is_in(uids.column(0), value_set=self._booking_uids)
            self._orphans.append(uids.filter(pc.invert(known)))
        held = sum(len(t) for t in self._preview)
        if held < self._preview_rows:
            self._preview.append(_compact(table.slice(0, self._preview_rows - held)))
        return batch

    def result(self) -> PartitionQuality:
        empty = pa.Table.from_batches([], self._spec.schema)  # empty_table() imports pandas
        return PartitionQuality(
            table=self._spec.name,
            rows=self._rows,
            keys=_concat([empty.select(list(self._spec.key_columns)), *self._keys]),
            bad_times=_concat(self._bad_times) if self._bad_times else None,
            extra_rows=_concat([empty.select([EXTRA_COLUMN]), *self._extra]),
            orphans=_concat(self._orphans) if self._orphans else None,
            preview=_concat([empty, *self._preview]),
        )


def _compact(table: pa.Table) -> pa.Table:
    """A copy of a few rows that holds only their bytes. A slice would keep the whole batch's
    buffers alive: every partition's first batch, all of a sweep's data by the end of it."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


def _concat(tables: list[pa.Table]) -> pa.Table:
    # combine_chunks: the kept pieces are small; one buffer each rather than one per batch.
    return pa.concat_tables(tables).combine_chunks()


def assess(
    spec: TableSpec, partitions: Sequence[PartitionQuality], total_count: int | None
) -> list[QualityResult]:
    """Every rule of the table ``spec`` over the written ``partitions`` together (key uniqueness
    across them too). ``total_count`` is what the API's totals said the partitions hold, if
    known."""
    names = check_names(spec)
    keys = [p.keys for p in partitions]
    found = [
        key_unique_not_null(
            pa.concat_tables(keys) if keys else spec.schema.empty_table(), spec.key_columns
        ),
        extra_empty(_stack([p.extra_rows for p in partitions], [EXTRA_COLUMN])),
    ]
    if "ended_after_started" in names:
        bad = [p.bad_times for p in partitions if p.bad_times is not None]
        found.append(ended_after_started(_stack(bad, ["uid", "started_at", "ended_at"])))
    if "rows_match_total" in names:
        found.append(rows_match_total(sum(p.rows for p in partitions), total_count))
    if "contacts_reference_bookings" in names:
        orphans = [p.orphans for p in partitions if p.orphans is not None]
        # Only the orphans were kept: none of them has a booking, so the known set is empty.
        found.append(contacts_reference_bookings(_stack(orphans, ["booking_uid"]), ()))
    return found


def _stack(tables: Sequence[pa.Table], columns: Sequence[str]) -> pa.Table:
    if tables:
        return pa.concat_tables(tables)
    return pa.table({name: pa.nulls(0) for name in columns})
