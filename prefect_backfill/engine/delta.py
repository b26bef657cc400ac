"""Spark + Delta Lake implementation of :class:`~prefect_backfill.engine.Engine`.

Every partition write is ``mode("overwrite")`` with ``replaceWhere`` on the partition column only:
Delta swaps that partition's rows in one commit, so readers see the old partition or the new one,
never a mix, and a rerun gives the same table. Delta's replaceWhere constraint check stays on: an
output row outside the partition fails the write before anything is committed. On a clustered or
unpartitioned target (:class:`~prefect_backfill.engine.targets.TargetLayout`) the chunks' commits go one
at a time (:mod:`prefect_backfill.engine.committer`) and the ledger's digests are of rows
(:mod:`prefect_backfill.engine.content`).

The same code runs on a classic session and on a Spark Connect one (``BACKFILL_SPARK_REMOTE``): a
partition's Spark work carries the tag :func:`job_tag` on both (a job tag on classic, an operation tag
on Connect), so :meth:`SparkDeltaEngine.cancel` stops it from any thread; local properties
(job description, FAIR pool) exist only on classic Spark, and catalog tables are described with SQL on
Connect (the DeltaTable API would need Delta's Connect plugin on the server).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from prefect_backfill.catalog import storage_of
from prefect_backfill.engine import ChunkOutcome, TableInfo
from prefect_backfill.engine.commits import (
    commit_version,
    committed_digests,
    committed_rows,
    committed_snapshot,
    written_rows,
)
from prefect_backfill.engine.committer import Committer, write_chunk
from prefect_backfill.engine.content import HASH_SUM, content_aggregate, content_digest, read_content
from prefect_backfill.engine.failures import engine_errors
from prefect_backfill.engine.job_tags import tagged, tidying
from prefect_backfill.engine.measures import aggregates, check_chunk, chunk_diff, rows_in_source, summed_columns
from prefect_backfill.engine.output_reuse import keep_output
from prefect_backfill.engine.predicates import (
    chunk_condition,
    chunk_predicate,
    chunk_span,
    job_properties,
    job_tag,
    quote_name,
)
from prefect_backfill.engine.spark import get_spark, is_remote, started_spark
from prefect_backfill.engine.targets import (
    TargetLayout,
    check_existing_target,
    create_target,
    empty_output,
    target_layout,
    validate_declarations,
)
from prefect_backfill.errors import (
    EmptyOutputError,
    EmptySourcePartitionError,
    PartitionValidationError,
    RowsOutsidePartitionError,
    SourceNotFoundError,
    TransformError,
)
from prefect_backfill.ledger import register_ledger_views  # the views live with the ledger; README spells it here
from prefect_backfill.lineage import source_partitions
from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.schema_change import columns_of, shape_text
from prefect_backfill.settings import get_settings
from prefect_backfill.snapshots import TableSnapshot, partition_key
from prefect_backfill.storage import delta_options, on_object_store
from prefect_backfill.tables import read_snapshot

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

__all__ = [
    "SparkDeltaEngine",
    "register_ledger_views",
]


def _describe_path(location: str) -> TableInfo:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(location, storage_options=delta_options(location))
    except TableNotFoundError:
        return TableInfo(exists=False)
    metadata = table.metadata()
    return TableInfo(
        True, str(metadata.id), tuple(metadata.partition_columns), table.schema().to_json(), location.rstrip("/")
    )


class SparkDeltaEngine:
    """Spark + Delta. One per process, made by :func:`prefect_backfill.engine.get_engine` (the only
    engine singleton): its session is the process's one Spark session."""

    def __init__(self) -> None:
        self._create_lock = threading.Lock()
        self._targets: dict[str, TableInfo] = {}  # by target location: read once per process
        self._committer = Committer()
        # Read once, like the session itself (settings cost ~2 ms to read: not once per partition).
        self._pool = get_settings().spark_pool

    @property
    def spark(self) -> SparkSession:
        return get_spark()

    def _spark(self, *tables: TableRef) -> SparkSession:
        """The session, with the S3A connector if any of ``tables`` is on an object store."""
        return get_spark(object_store=any(on_object_store(t.location) for t in tables))

    # -- tables ---------------------------------------------------------------------------------

    def describe(self, table: TableRef) -> TableInfo:
        if table.path:  # a path, or a catalog table whose storage its metastore gave: delta-rs, no JVM
            return _describe_path(table.path)
        spark = self._spark(table)
        if not spark.catalog.tableExists(table.location):
            return TableInfo(exists=False)
        if is_remote(spark):  # the same answer as DeltaTable.detail(), which needs Delta's Connect plugin
            detail = spark.sql(f"DESCRIBE DETAIL {quote_name(table.location)}").collect()[0]
        else:
            from delta.tables import DeltaTable

            detail = DeltaTable.forName(spark, table.location).detail().collect()[0]
        schema = spark.read.table(table.location).schema.json()
        location = storage_of({"spark.sql.sources.provider": "delta"}, {}, str(detail["location"]))
        return TableInfo(True, str(detail["id"]), tuple(detail["partitionColumns"]), schema, location)

    def snapshot(self, table: TableRef, column: str, grain: Grain, version: int | None = None) -> TableSnapshot:
        """Path tables and catalog tables whose metastore gave their storage: delta-rs reads the log (no
        JVM). Other catalog tables: their storage location from Spark, then the same; a location delta-rs
        cannot open gives an unknown snapshot (the ledger alone then decides, as before)."""
        if table.path:
            return read_snapshot(table.path, column, grain, version)
        info = self.describe(table)
        if not info.exists or info.location is None:
            return TableSnapshot(exists=False)
        try:
            return read_snapshot(info.location, column, grain, version)
        except Exception:
            return TableSnapshot.unknown()

    def content_snapshot(
        self, table: TableRef, column: str, grain: Grain, version: int | None = None, keys: Sequence[Partition] = ()
    ) -> TableSnapshot:
        """See :mod:`prefect_backfill.engine.content` (one grouped job over ``keys``' rows)."""
        with engine_errors():
            spark = self._spark(table)
            location = table.path or self.describe(table).location or table.location
            return read_content(spark, location, column, grain, version, keys)

    def _read(self, table: TableRef) -> DataFrame:
        spark = self._spark(table)
        reader = spark.read.format("delta")
        return reader.load(table.location) if table.is_path else spark.read.table(table.location)

    def ensure_target(self, pipeline: Pipeline) -> TableInfo:
        source = self.describe(pipeline.source)
        if not source.exists:
            raise SourceNotFoundError(
                f"source table {pipeline.source} of pipeline {pipeline.name} does not exist (or is not a "
                "Delta table): check the pipeline's source"
            )
        with self._create_lock:
            target = self.describe(pipeline.target)
            if not target.exists:
                if pipeline.checks or pipeline.key:
                    validate_declarations(empty_output(self._read(pipeline.source), pipeline), pipeline)
                target = self._create_target(pipeline)
            elif check_existing_target(self._spark(pipeline.target), self._read(pipeline.source), pipeline, target):
                target = self.describe(pipeline.target)  # its schema changed
            target_layout(target, pipeline)
            self._targets[pipeline.target.location] = target
            return target

    def _layout(self, pipeline: Pipeline) -> TargetLayout:
        """The target's layout, as :meth:`ensure_target` found it (or read now: a Dask worker's engine
        processes chunks without having prepared the target)."""
        location = pipeline.target.location
        if location not in self._targets:
            self._targets[location] = self.describe(pipeline.target)
        return target_layout(self._targets[location], pipeline)

    def _create_target(self, pipeline: Pipeline) -> TableInfo:
        create_target(self._read(pipeline.source), pipeline)
        return self.describe(pipeline.target)

    # -- partitions -----------------------------------------------------------------------------

    def process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None = None,
        source_bytes: int | None = None,
    ) -> ChunkOutcome:
        """:meth:`_process_chunk` at the engine's boundary: what Spark or Delta raise leaves as the
        package's error types, classified here once (:func:`~prefect_backfill.engine.failures.engine_errors`)."""
        with engine_errors():
            return self._process_chunk(pipeline, partitions, commit_tag, rows_in, source_bytes)

    def _process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None,
        source_bytes: int | None,
    ) -> ChunkOutcome:
        """Read the chunk's source partitions, transform them together, check each partition's output,
        and replace exactly those target partitions in one Delta commit: one job to count, one to write.

        Per-partition truth without a job per partition: rows in come from the source's log (file
        statistics), rows out from one grouped count of the output, which is persisted so the write
        does not compute it again. The checks run on those counts *before* the commit; a failed check
        names its partitions (:attr:`PartitionValidationError.partitions`) when it knows them.
        """
        from py4j.protocol import Py4JError
        from pyspark import StorageLevel
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        spark = self._spark(pipeline.source, pipeline.target)
        column = pipeline.partition_column
        parts = sorted(partitions)
        keys = [p.key for p in parts]
        if rows_in is None or any(k not in rows_in for k in keys):
            source_log = self.snapshot(pipeline.source, pipeline.partition_column, pipeline.grain)
            rows_in = rows_in_source(pipeline, parts, source_log, lambda: self._read(pipeline.source))
        if not pipeline.allow_empty and (empty := tuple(k for k in keys if rows_in.get(k, 0) == 0)):
            raise EmptySourcePartitionError(
                f"source partition {column}={', '.join(empty[:5])}{' …' if len(empty) > 5 else ''} is empty; the "
                "target partition was left as it was (set allow_empty=True on the pipeline if empty is correct)",
                partitions=empty,
            )
        # Tag this thread's Spark work with the chunk, so cancel() stops it. On classic Spark also name
        # the jobs after the chunk (Spark UI, history server) and put them in the backfill pool, so a
        # shared application can give other work priority; Connect has no local properties.
        span = chunk_span(keys)
        tags = (job_tag(pipeline.name, span), job_tag(pipeline.name))
        with tagged(spark, tags, job_properties(pipeline.name, span, self._pool)):
            source = self._read(pipeline.source).where(chunk_condition(column, source_partitions(pipeline, parts)))
            try:
                output = pipeline.transform(source)
            except Exception as exc:  # raised on the driver while building the plan: the same every time
                if isinstance(exc, PySparkException | Py4JError):
                    raise  # Spark's own (analysis errors, a lost JVM): classified as they are
                raise TransformError(
                    f"the transform of {pipeline.name} raised {type(exc).__name__}: {str(exc).strip()[:300]}"
                ) from exc
            if column not in output.columns:
                raise PartitionValidationError(
                    f"the transform of {pipeline.name} drops the partition column {column}: keep it",
                    partitions=tuple(keys),
                )
            # A target whose commits go one at a time: the output is computed once, in parallel, by the
            # count pass; only the write of that cache waits for the table (engine/committer.py).
            serial = self._layout(pipeline) is TargetLayout.DATA_COLUMN
            cached = serial or keep_output(pipeline, output, source_bytes)
            if cached:
                output = output.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                summed = summed_columns(pipeline, output)
                counted = (
                    output.groupBy(column)
                    .agg(
                        F.count(F.lit(1)).alias("_bf_n"),
                        *[F.sum(F.col(c)).alias(f"_bf_s{i}") for i, c in enumerate(summed)],
                        *aggregates(pipeline.checks),
                        *([content_aggregate(output)] if serial else []),
                    )
                    .collect()
                )
                rows_out = dict.fromkeys(keys, 0)
                values: dict[str, dict[str, Any]] = {}
                outside = []
                for row in counted:
                    found = partition_key(row[column], pipeline.grain)
                    if found is not None and found in rows_out:
                        rows_out[found] = int(row["_bf_n"])
                        values[found] = row.asDict()
                    else:
                        outside.append(str(row[column]))
                if outside:
                    raise RowsOutsidePartitionError(
                        f"the transform wrote rows outside partition {column}={span}; nothing was committed: "
                        f"make the transform keep each row's partition value (found {', '.join(outside[:3])})",
                        partitions=tuple(keys) if len(keys) == 1 else (),
                    )
                # An empty output of a non-empty source is a buggy filter far more often than truth: it
                # must not replace good rows unasked.
                emptied = tuple(k for k in keys if rows_in.get(k, 0) > 0 and rows_out[k] == 0)
                if emptied and not pipeline.allow_empty_output:
                    raise EmptyOutputError(
                        f"the transform of {pipeline.name} returned no rows for {column}={', '.join(emptied[:5])} "
                        f"from {sum(rows_in[k] for k in emptied):,} source rows; the target partition was left "
                        "as it was (set allow_empty_output=True on the pipeline if an empty result is correct)",
                        partitions=emptied,
                    )
                check_chunk(pipeline, output, keys, rows_in, rows_out, values)
                diffs = (
                    chunk_diff(pipeline, self._read_current(pipeline.target), output, parts, summed, rows_out, values)
                    if pipeline.diff
                    else {}
                )
                predicate = chunk_predicate(column, parts)
                if serial:
                    self._committer.commit(
                        pipeline.target.location, lambda: write_chunk(pipeline, output, predicate, commit_tag, span)
                    )
                else:
                    write_chunk(pipeline, output, predicate, commit_tag, span)
            finally:
                if cached:
                    with tidying("unpersist the chunk's output"):
                        output.unpersist()
        version = commit_version(pipeline, commit_tag)
        snapshot = committed_snapshot(pipeline, keys, version)
        written = written_rows(pipeline, span, rows_out, committed_rows(snapshot, keys))
        if written != rows_out:
            rows_out = written
            # The diff's row counts follow (its sums stay the count pass's: the commit's are not known).
            diffs = {k: replace(d, rows_after=written[k]) for k, d in diffs.items()}
        counts = {k: (rows_in.get(k, 0), rows_out[k]) for k in keys}
        return ChunkOutcome(
            table_version=version,
            rows=counts,
            diffs={k: d.to_json() for k, d in diffs.items()},
            rows_before={k: d.rows_before for k, d in diffs.items()},
            # Files mix partitions on a clustered or unpartitioned target: the digest is of the rows written.
            target_digests=(
                {k: content_digest(rows_out[k], values[k][HASH_SUM]) for k in keys if rows_out[k]}
                if serial
                else committed_digests(snapshot, keys)
            ),
            shape=shape_text(columns_of(output.schema.json())),
        )

    # -- checks and diff (before the commit) ----------------------------------------------------

    def _read_current(self, table: TableRef) -> DataFrame:
        """The table as of its current version, pinned (path tables): the state this chunk's commit replaces,
        whatever other chunks commit meanwhile (they touch other partitions)."""
        if table.is_path:
            from deltalake import DeltaTable

            version = DeltaTable(table.location, storage_options=delta_options(table.location)).version()
            return self._spark(table).read.format("delta").option("versionAsOf", version).load(table.location)
        return self._spark(table).read.table(table.location)

    def cancel(self, pipeline: Pipeline, partitions: Sequence[Partition] | None = None) -> None:
        """Cancel the Spark work of one chunk in flight, from any thread (a task timeout or a closed
        window does not stop the Spark jobs a thread started). The write is one Delta commit: a chunk
        cancelled before it commits leaves the target as it was.

        Classic Spark: ``SparkContext.cancelJobsWithTag`` (``SparkSession.interruptTag`` from another
        thread cancelled nothing in pyspark 4.2 classic); Connect: ``SparkSession.interruptTag``."""
        spark = started_spark()
        if spark is None:  # nothing can be running yet
            return
        span = None if partitions is None else chunk_span([p.key for p in sorted(partitions)])
        tag = job_tag(pipeline.name, span)
        if is_remote(spark):
            spark.interruptTag(tag)
        else:
            spark.sparkContext.cancelJobsWithTag(tag)

    def restore(self, pipeline: Pipeline, versions: Mapping[Partition, int], commit_tag: str) -> int | None:
        """See :mod:`prefect_backfill.engine.restore` (time travel + replaceWhere, one commit)."""
        from prefect_backfill.engine.restore import restore_partitions

        spark = self._spark(pipeline.source, pipeline.target)
        tag = job_tag(pipeline.name)  # cancel(pipeline) stops it before its commit (Ctrl-C on `backfill undo`)
        with tagged(spark, (tag,)):
            restore_partitions(spark, pipeline, versions, commit_tag)
        return commit_version(pipeline, commit_tag)
