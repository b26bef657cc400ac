"""A pipeline's target, before any partition is written: its declarations checked against the
transform's output schema, the empty table created with exactly that schema, or an existing table's
schema brought to the output's where every partition can live with it (:mod:`prefect_backfill.schema_change`).
Analysis and metadata only, no Spark job: a definition error is one line before anything is written."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prefect_backfill import checks as checking
from prefect_backfill.engine import TableInfo
from prefect_backfill.engine.predicates import quote_name
from prefect_backfill.errors import (
    PartitionValidationError,
    PipelineDefinitionError,
    SchemaChangeError,
    SourceNotFoundError,
    TargetLayoutError,
    TransformError,
    one_line,
)
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.schema_change import Column, SchemaChange, columns_of, compare

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "TargetLayout",
    "check_existing_target",
    "create_target",
    "empty_output",
    "evolve_target",
    "target_layout",
    "validate_declarations",
]

logger = logging.getLogger(__name__)


class TargetLayout(enum.Enum):
    """How a chunk's ``replaceWhere`` replaces its partitions in the target."""

    #: Partitioned by the partition column: the commit swaps those partitions' files; chunks of disjoint
    #: partitions commit in parallel (Delta's conflict check tells them apart).
    PARTITIONED = "partitioned"
    #: Not partitioned (liquid-clustered or plain), the partition column a data column: the commit deletes
    #: the chunk's rows by that column, rewriting the files that also hold other dates, and chunks commit
    #: one at a time (:mod:`prefect_backfill.engine.committer`).
    DATA_COLUMN = "data column"


def target_layout(target: TableInfo, pipeline: Pipeline) -> TargetLayout:
    """The layout of an existing ``target`` for ``pipeline``; a table partitioned by other columns, or an
    unpartitioned one without the partition column, is refused (:class:`TargetLayoutError`)."""
    column = pipeline.partition_column
    if column in target.partition_columns:
        return TargetLayout.PARTITIONED
    if target.partition_columns:
        raise TargetLayoutError(
            f"target {pipeline.target} is partitioned by {', '.join(target.partition_columns)}, not by {column}: "
            f"a partition overwrite would rewrite the whole table; recreate it partitioned by {column}, "
            f"clustered by it (cluster_by=) or unpartitioned, or point the pipeline elsewhere"
        )
    names = [c.name for c in columns_of(target.schema)] if target.schema is not None else None
    if names is not None and column not in names:
        raise TargetLayoutError(
            f"target {pipeline.target} is partitioned by nothing and has no column {column} "
            f"(it has {', '.join(names)}): point the pipeline at a table with that column"
        )
    return TargetLayout.DATA_COLUMN


def empty_output(source: DataFrame, pipeline: Pipeline) -> DataFrame:
    """The transform of an empty input: its schema is the output's, resolved without a job."""
    try:
        empty = pipeline.transform(source.limit(0))
        empty.columns  # noqa: B018  (analysis errors, a misspelt column, surface here)
    except Exception as exc:
        raise TransformError(
            f"the transform of {pipeline.name} failed on an empty input ({one_line(exc)}): fix the transform; "
            "nothing was written"
        ) from exc
    return empty


def validate_declarations(empty: DataFrame, pipeline: Pipeline) -> None:
    """Checks and key columns against the transform's output schema (``empty``: :func:`empty_output`),
    before anything is written: a misspelt column or an expression Spark cannot parse is one line, exit 2."""
    from pyspark.sql import functions as F

    columns = empty.columns
    missing = [k for k in pipeline.key if k not in columns]
    if missing:
        raise PipelineDefinitionError(
            f"pipeline {pipeline.name}: key column {missing[0]!r} is not in the transform's output "
            f"(it has {', '.join(columns)})"
        )

    def parse(expression: str) -> None:
        resolved = empty.select(F.expr(expression).alias("_check"))
        kind = resolved.dtypes[0][1]  # resolving the plan: unknown columns and bad syntax raise here
        if kind != "boolean":
            raise ValueError(f"it gives {kind}, not boolean")

    checking.validate(pipeline.checks, pipeline.name, columns, parse)


def create_target(source: DataFrame, pipeline: Pipeline) -> None:
    """Create the empty target with the transform's schema: partitioned by the partition column, or
    liquid-clustered by ``pipeline.cluster_by`` (then not partitioned).

    Done once before the fan-out: parallel first writes to a missing table would race to create it.
    """
    if pipeline.partition_column not in source.columns:
        raise SourceNotFoundError(
            f"source {pipeline.source} has no column {pipeline.partition_column}: "
            f"its columns are {', '.join(source.columns)}"
        )
    # The transform of an empty input: the target gets exactly the transform's schema, and no
    # Python worker is started (createDataFrame([], schema) would go through a Python RDD).
    try:
        empty = pipeline.transform(source.limit(0))
        columns = empty.columns  # analysis errors (a misspelt column) surface here
    except Exception as exc:
        raise TransformError(
            f"the transform of {pipeline.name} failed while the target {pipeline.target} was being created, "
            f"on an empty input ({one_line(exc)}): fix the transform; nothing was written"
        ) from exc
    if pipeline.partition_column not in columns:
        raise PartitionValidationError(
            f"the transform of {pipeline.name} drops the partition column {pipeline.partition_column}: keep it"
        )
    if pipeline.cluster_by:
        _create_clustered(empty, pipeline)
        return
    writer = empty.write.format("delta").partitionBy(pipeline.partition_column)
    if pipeline.target.is_path:
        # "error" = ErrorIfExists; the Spark Connect client knows only this spelling of it.
        writer.mode("error").save(pipeline.target.location)
    else:
        writer.saveAsTable(pipeline.target.location)


def _create_clustered(empty: DataFrame, pipeline: Pipeline) -> None:
    """``CREATE TABLE … CLUSTER BY … AS SELECT`` the empty output: Delta's DataFrame writers take no
    clustering columns (``writeTo().clusterBy()`` is refused as "partitioning by expressions"), its SQL
    does, on a classic session and on Connect alike."""
    missing = [c for c in pipeline.cluster_by if c not in empty.columns]
    if missing:
        raise PipelineDefinitionError(
            f"pipeline {pipeline.name}: cluster_by column {missing[0]!r} is not in the transform's output "
            f"(it has {', '.join(empty.columns)})"
        )
    view = f"_backfill_create_{uuid.uuid4().hex}"
    empty.createOrReplaceTempView(view)
    try:
        columns = ", ".join(_quoted(c) for c in pipeline.cluster_by)
        empty.sparkSession.sql(
            f"CREATE TABLE {_sql_name(pipeline)} USING delta CLUSTER BY ({columns}) AS SELECT * FROM {view}"
        )
    finally:
        empty.sparkSession.catalog.dropTempView(view)


def check_existing_target(spark: SparkSession, source: DataFrame, pipeline: Pipeline, target: TableInfo) -> bool:
    """An existing ``target`` before the first chunk: a layout a partition overwrite can use
    (:func:`target_layout`), the declarations valid for the output, and its schema brought to the
    output's (:func:`evolve_target`). True if its schema changed."""
    target_layout(target, pipeline)
    empty = empty_output(source, pipeline)
    if pipeline.checks or pipeline.key:
        validate_declarations(empty, pipeline)
    if target.schema is None:
        return False
    return bool(evolve_target(spark, columns_of(target.schema), empty, pipeline, _sql_name(pipeline)))


def _sql_name(pipeline: Pipeline) -> str:
    """How Spark SQL names the target: ``delta.`path` `` or its catalog name."""
    t = pipeline.target
    return "delta.`" + t.location.replace("`", "``") + "`" if t.is_path else quote_name(t.location)


def evolve_target(
    spark: SparkSession, target: Sequence[Column], empty: DataFrame, pipeline: Pipeline, name: str
) -> SchemaChange:
    """Bring the existing target's schema (``target``: its columns) to the output's (``empty``) before the
    first chunk, or refuse.

    Added columns: ``ALTER TABLE … ADD COLUMNS`` (one metadata commit: chunks in parallel must not each
    evolve the schema, their commits would conflict). Widened types: Delta's type widening, enabled on the
    table then, ``ALTER COLUMN … TYPE``. Anything else raises :class:`SchemaChangeError` and nothing is
    written. ``name`` is how Spark SQL names the table (```delta.`path` ``` or a catalog name)."""
    change = compare(target, columns_of(empty.schema.json()))
    if change.refused:
        raise SchemaChangeError(change.refusal(pipeline.name, str(pipeline.target)))
    if change.widened and not pipeline.widen_types and not _widening_on(spark, name):
        raise SchemaChangeError(change.widening_refusal(pipeline.name, str(pipeline.target)))
    if change.widened:
        spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('delta.enableTypeWidening' = 'true')")
        for c in change.widened:
            spark.sql(f"ALTER TABLE {name} ALTER COLUMN {_quoted(c.column)} TYPE {c.new_type}")
    if change.added:
        columns = ", ".join(f"{_quoted(c.column)} {c.new_type}" for c in change.added)
        spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({columns})")
    if change:
        logger.warning(
            "target %s: the transform of %s %s; partitions not reprocessed read %s",
            pipeline.target,
            pipeline.name,
            "; ".join(str(c) for c in change.changes),
            "the new columns as NULL until they are" if change.added else "their old values as the wider type",
        )
    return change


def _widening_on(spark: SparkSession, name: str) -> bool:
    """Whether the table has Delta's type widening enabled already (its owner decided the upgrade)."""
    rows = spark.sql(f"SHOW TBLPROPERTIES {name}").collect()
    return any(r["key"] == "delta.enableTypeWidening" and str(r["value"]).lower() == "true" for r in rows)


def _quoted(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"
