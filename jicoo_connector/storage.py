"""Atomic Parquet partitions (local or any pyarrow filesystem URI).

Every method is handed the table's ``TableSpec`` (its schema and partitioning): the store looks
no table up by name and knows nothing of the registry, the client or dagster. Warehouse loads
live in ``warehouse/``.
"""

import datetime as dt
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jicoo_connector.atomic import TEMP_MARKER, atomic_path, temp_glob
from jicoo_connector.errors import ConfigError
from jicoo_connector.tables import TableSpec

if TYPE_CHECKING:
    # Imported where used: pyarrow.dataset imports pandas, which an extraction does not need.
    import pyarrow.dataset as ds

__all__ = [
    "DATA_FILE_NAME",
    "ZONE_KEY",
    "ParquetStore",
    "PartitionWriteResult",
]

logger = logging.getLogger(__name__)

DATA_FILE_NAME = "data.parquet"
# Footer key of the IANA zone a partition's days (and snapshot dates) were cut in: a folder
# cut in Tokyo days and one cut in UTC days hold the same booking on different days.
ZONE_KEY = "jicoo.time_zone"
PARQUET_COMPRESSION: Final = "zstd"
# Row groups large enough for good compression, small enough to keep reader memory modest.
ROW_GROUP_ROWS = 64 * 1024
# Temp files of writers before atomic_path (not hidden); still cleared when stale.
_LEGACY_TEMPS = f"{DATA_FILE_NAME}{TEMP_MARKER}*"
# A temp file this old belongs to a writer that died (SIGKILL, power loss); a younger one may
# belong to a writer still running, so it is left alone.
STALE_TEMP_SECONDS = 15 * 60
_COPY_BUFFER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PartitionWriteResult:
    """Where one partition was written, with its row count and file size in bytes."""

    path: str
    rows: int
    bytes: int


class ParquetStore:
    """A hive-laid-out Parquet dataset: ``<root>/<table>/<key>=<value>/data.parquet``.

    ``root`` is a local path or a URI pyarrow understands (``s3://bucket/prefix``); pass
    ``filesystem`` to override how it is reached (an S3 endpoint, credentials).

    >>> store = ParquetStore("data/warehouse")  # doctest: +SKIP
    >>> store.write_partition(TABLES["users"].spec, dt.date(2024, 3, 1), batches)  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, *, filesystem: pafs.FileSystem | None = None) -> None:
        text = str(root)
        if filesystem is not None:
            self.filesystem = filesystem
            self.base = text.split("://", 1)[1] if "://" in text else text
        elif "://" in text:
            self.filesystem, self.base = pafs.FileSystem.from_uri(text)
        else:
            self.filesystem = pafs.LocalFileSystem()
            self.base = str(Path(text).resolve())
        self.base = self.base.rstrip("/")
        self.is_local = isinstance(self.filesystem, pafs.LocalFileSystem)
        self.root = text

    def __repr__(self) -> str:
        return f"ParquetStore({self.root!r})"

    def partition_dir(self, spec: TableSpec, partition_value: dt.date) -> str:
        return f"{self.base}/{spec.name}/{spec.partition_column}={partition_value.isoformat()}"

    def partition_path(self, spec: TableSpec, partition_value: dt.date) -> str:
        return f"{self.partition_dir(spec, partition_value)}/{DATA_FILE_NAME}"

    def table_uri(self, spec: TableSpec) -> str:
        """Where all partitions of the table live (for metadata such as ``dagster/uri``)."""
        return self.location(f"{self.base}/{spec.name}")

    def location(self, path: str) -> str:
        """A path of this store as users spell it: a local path, or ``<scheme>://bucket/key``."""
        if self.is_local:
            return path
        scheme = self.root.split("://", 1)[0] if "://" in self.root else self.filesystem.type_name
        return f"{scheme}://{path}"

    def write_partition(
        self,
        spec: TableSpec,
        partition_value: dt.date,
        batches: Iterable[pa.RecordBatch],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> PartitionWriteResult:
        """Stream ``batches`` into the partition's one Parquet file, replacing it atomically.

        Readers see the old file or the new one, never a mix or a half-written file. If the
        batches raise midway, the old file stays and the exception propagates. ``metadata``
        goes into the file's footer (key-value metadata): it is replaced with the data, never
        apart from it; read it with ``partition_metadata``.
        """
        final = self.partition_path(spec, partition_value)
        schema = file_schema(spec).with_metadata(dict(metadata or {}))
        if self.is_local:
            rows = self._write_local(spec, schema, final, batches)
        else:
            rows = self._write_remote(spec, schema, final, batches)
        size = self.filesystem.get_file_info(final).size or 0
        logger.info("wrote %s rows (%s bytes) to %s", rows, size, final)
        return PartitionWriteResult(path=self.location(final), rows=rows, bytes=size)

    def _write_local(
        self, spec: TableSpec, schema: pa.Schema, final: str, batches: Iterable[pa.RecordBatch]
    ) -> int:
        directory = Path(final).parent
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(directory)
        with atomic_path(final) as temp:
            return _write_parquet(spec, schema, str(temp), batches, self.filesystem)

    def _write_remote(
        self, spec: TableSpec, schema: pa.Schema, final: str, batches: Iterable[pa.RecordBatch]
    ) -> int:
        # Object stores replace a key atomically when one upload completes: readers get the old
        # object until then. A temp key + copy is two requests (a crash between them leaks the
        # temp key; big copies are multipart and not atomic), so the final key gets exactly one
        # upload. Parquet is first spooled to a local temp file (disk, not memory): writing it
        # straight to the remote stream would, on an exception midway, still complete the upload
        # when the stream is closed and publish a truncated file.
        with tempfile.TemporaryDirectory(prefix="jicoo-spool-") as spool_dir:
            spool = str(Path(spool_dir) / DATA_FILE_NAME)
            rows = _write_parquet(spec, schema, spool, batches, pafs.LocalFileSystem())
            self.filesystem.create_dir(str(Path(final).parent), recursive=True)
            with (
                pafs.LocalFileSystem().open_input_stream(spool) as source,
                self.filesystem.open_output_stream(final) as sink,
            ):
                shutil.copyfileobj(source, sink, _COPY_BUFFER_BYTES)
        return rows

    def read_partition(
        self, spec: TableSpec, partition_value: dt.date, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """One partition with the full table schema (the partition column comes from the path),
        or only ``columns`` of it."""
        dataset = self._dataset(spec, [self.partition_path(spec, partition_value)])
        return dataset.to_table(columns=None if columns is None else list(columns))

    def partition_metadata(
        self, spec: TableSpec, partition_value: dt.date
    ) -> dict[str, str] | None:
        """The footer metadata ``write_partition`` stored, or None if the partition has no file.

        Only the footer is read, not the data.
        """
        path = self.partition_path(spec, partition_value)
        try:
            with self.filesystem.open_input_file(path) as source:
                stored = pq.read_schema(source).metadata or {}
        except FileNotFoundError:
            return None
        return {
            key.decode(): value.decode()
            for key, value in stored.items()
            if not key.startswith(b"ARROW:")  # pyarrow's own schema copy
        }

    def time_zone(self, spec: TableSpec) -> str | None:
        """The zone the latest partition of the table was cut in (``ZONE_KEY`` in its footer),
        or None when there is no partition or it was written before zones were recorded."""
        values = self.list_partitions(spec)
        if not values:
            return None
        return (self.partition_metadata(spec, values[-1]) or {}).get(ZONE_KEY)

    def dataset(self, spec: TableSpec) -> "ds.FileSystemDataset":
        """Every partition of the table as one pyarrow dataset, partition column typed."""
        # Listed files only: temp files of a running or crashed writer are not the table.
        paths = [self.partition_path(spec, value) for value in self.list_partitions(spec)]
        return self._dataset(spec, paths)

    def _dataset(self, spec: TableSpec, paths: list[str]) -> "ds.FileSystemDataset":
        import pyarrow.dataset as ds  # lazy: see the imports above

        partitioning = ds.partitioning(
            pa.schema([spec.schema.field(spec.partition_column)]), flavor="hive"
        )
        return ds.dataset(
            paths,
            schema=spec.schema,
            format="parquet",
            filesystem=self.filesystem,
            partitioning=partitioning,
            partition_base_dir=f"{self.base}/{spec.name}",
        )

    def has_partition(self, spec: TableSpec, partition_value: dt.date) -> bool:
        info = self.filesystem.get_file_info(self.partition_path(spec, partition_value))
        return info.type == pafs.FileType.File

    def list_partitions(self, spec: TableSpec) -> list[dt.date]:
        """Partition values of the table that have a data file, sorted."""
        prefix = f"{spec.partition_column}="
        selector = pafs.FileSelector(
            f"{self.base}/{spec.name}", recursive=True, allow_not_found=True
        )
        values: list[dt.date] = []
        for info in self.filesystem.get_file_info(selector):
            parent, _, name = info.path.rpartition("/")
            folder = parent.rpartition("/")[2]
            if info.type != pafs.FileType.File or name != DATA_FILE_NAME:
                continue
            if folder.startswith(prefix):
                try:
                    values.append(dt.date.fromisoformat(folder.removeprefix(prefix)))
                except ValueError:
                    logger.warning("ignoring a folder that is not a partition: %s", parent)
        return sorted(values)


def file_schema(spec: TableSpec) -> pa.Schema:
    """The schema inside each file: the table's, less the partition column.

    The partition value lives only in the hive path (``day=2026-11-25/``), as every hive reader
    expects: ``pd.read_parquet(dir)``, ``duckdb.read_parquet(..., hive_partitioning=true)``,
    Spark. A copy inside the files would clash with the path's type in untyped discovery.
    """
    if not spec.extracted:
        raise ConfigError(f"{spec.name} is written by write-back, not stored in date partitions")
    return spec.schema.remove(spec.schema.get_field_index(spec.partition_column))


def _write_parquet(
    spec: TableSpec,
    schema: pa.Schema,
    path: str,
    batches: Iterable[pa.RecordBatch],
    filesystem: pafs.FileSystem,
) -> int:
    rows = 0
    drop = spec.schema.get_field_index(spec.partition_column)
    # One batch in memory at a time: memory follows the batch size, not the partition size.
    with pq.ParquetWriter(
        path, schema, filesystem=filesystem, compression=PARQUET_COMPRESSION
    ) as writer:
        for batch in batches:
            if not batch.schema.equals(spec.schema):
                raise ConfigError(
                    f"{spec.name}: a batch does not match the table schema:\n{batch.schema}"
                )
            writer.write_batch(batch.remove_column(drop), row_group_size=ROW_GROUP_ROWS)
            rows += batch.num_rows
    return rows


def _remove_stale_temps(directory: Path) -> None:
    cutoff = time.time() - STALE_TEMP_SECONDS
    temps = [*directory.glob(temp_glob(DATA_FILE_NAME)), *directory.glob(_LEGACY_TEMPS)]
    for temp in temps:
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                logger.warning("removed a temp file left by a crashed writer: %s", temp)
        except FileNotFoundError:
            continue  # another writer removed it first
