"""What the Dagster UI shows of a table: column schemas with descriptions, asset checks, and
the metadata of a partition (its own figures) apart from those of a run (all its partitions).
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.metadata import RawMetadataValue

from jicoo_connector.client import FetchReport
from jicoo_connector.extract import TABLES, ExtractResult
from jicoo_connector.quality import (
    PartitionQuality,
    QualityResult,
    Severity,
    check_description,
    check_names,
)
from jicoo_connector.tables import TableSpec

PREVIEW_ROWS = 5
# Metadata as Dagster takes it (RawMetadataValue has no public name).
MetadataDict = dict[str, RawMetadataValue]


def column_schema(schema: pa.Schema, descriptions: Mapping[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                description=descriptions.get(f.name),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def spec_schema(spec: TableSpec) -> dg.TableSchema:
    """A table's columns, types and descriptions, from its spec."""
    return column_schema(spec.schema, spec.column_descriptions())


def table_schema(table: str) -> dg.TableSchema:
    """A registered table's column schema (``TABLES``)."""
    return spec_schema(TABLES[table].spec)


def check_specs(table: str, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    spec = TABLES[table].spec
    return [
        dg.AssetCheckSpec(name, asset=key, description=check_description(spec, name))
        for name in check_names(spec)
    ]


def check_result(key: dg.AssetKey, result: QualityResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=result.name,
        asset_key=key,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.WARN
        if result.severity is Severity.WARN
        else dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata=dict(result.metadata),
    )


def quality(result: ExtractResult) -> PartitionQuality:
    if result.quality is None:
        raise RuntimeError(f"{result.table} {result.partition_value}: written without quality")
    return result.quality


def _preview(data: pa.Table) -> str:
    head = data.slice(0, PREVIEW_ROWS).drop_columns(
        [c for c in data.column_names if c.startswith("_")]
    )
    return head.to_pandas().to_markdown(index=False) if len(head) else "(no rows)"


def partition_metadata(result: ExtractResult) -> MetadataDict:
    """One partition's own figures: its rows, its file, a preview and its table's counters
    (booking_contacts: ``jicoo/contacts_fetched`` and ``jicoo/contacts_reused`` of that day)."""
    metadata: MetadataDict = {
        "dagster/row_count": result.rows,
        "jicoo/preview": dg.MetadataValue.md(_preview(quality(result).preview)),
    }
    if result.path:
        metadata["dagster/uri"] = result.path
    for name, value in result.counters.items():
        metadata[f"jicoo/{name}"] = value
    return metadata


def run_metadata(results: Sequence[ExtractResult], seconds: float) -> MetadataDict:
    """The figures of a whole run of one table, over all its partitions: which partitions and
    their rows, what the API calls cost (requests, pages, retries...: a listing covers several
    days, so they cannot be split by day), the time taken, and the counters summed."""
    report = FetchReport()
    for result in results:
        report.merge(result.report)
    metadata: MetadataDict = {
        "jicoo/partitions": ", ".join(str(r.partition_value) for r in results),
        "jicoo/rows_by_partition": dg.MetadataValue.json(
            {str(r.partition_value): r.rows for r in results}
        ),
        "jicoo/rows": sum(r.rows for r in results),
        "jicoo/duration_s": round(seconds, 3),
        **{f"jicoo/{name}": value for name, value in report.as_metadata().items()},
    }
    for name in sorted({name for r in results for name in r.counters}):
        metadata[f"jicoo/{name}"] = sum(r.counters.get(name, 0) for r in results)
    return metadata
