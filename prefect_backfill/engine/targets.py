"""A pipeline's target, before any partition is written: its declarations checked against the
transform's output schema, the empty table created with exactly that schema, or an existing table's
schema brought to the output's where every partition can live with it (:mod:`prefect_backfill.schema_change`).
Analysis and metadata only, no Spark job: a definition error is one line before anything is written."""

from __future__ import annotations

import logging
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

__all__ = ["check_existing_target", "create_target", "empty_output", "evolve_target", "validate_declarations"]

logger = logging.getLogger(__name__)


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
    """Create the empty target, partitioned by the partition column, with the transform's schema.

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
    writer = empty.write.format("delta").partitionBy(pipeline.partition_column)
    if pipeline.target.is_path:
        # "error" = ErrorIfExists; the Spark Connect client knows only this spelling of it.
        writer.mode("error").save(pipeline.target.location)
    else:
        writer.saveAsTable(pipeline.target.location)


def check_existing_target(spark: SparkSession, source: DataFrame, pipeline: Pipeline, target: TableInfo) -> bool:
    """An existing ``target`` before the first chunk: partitioned by the partition column, the declarations
    valid for the output, and its schema brought to the output's (:func:`evolve_target`). True if its
    schema changed."""
    if pipeline.partition_column not in target.partition_columns:
        layout = ", ".join(target.partition_columns) or "nothing"
        raise TargetLayoutError(
            f"target {pipeline.target} is partitioned by {layout}, not by "
            f"{pipeline.partition_column}: a partition overwrite would rewrite the whole table; "
            f"recreate it partitioned by {pipeline.partition_column} or point the pipeline elsewhere"
        )
    empty = empty_output(source, pipeline)
    if pipeline.checks or pipeline.key:
        validate_declarations(empty, pipeline)
    if target.schema is None:
        return False
    t = pipeline.target
    name = f"delta.`{t.location}`" if t.is_path else quote_name(t.location)
    return bool(evolve_target(spark, columns_of(target.schema), empty, pipeline, name))


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
