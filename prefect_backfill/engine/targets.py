"""A pipeline's target, before any partition is written: its declarations checked against the
transform's output schema, and the empty table created with exactly that schema. Analysis only, no
Spark job: a definition error is one line before anything is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_backfill import checks as checking
from prefect_backfill.errors import PartitionValidationError, SourceNotFoundError, TransformError, one_line
from prefect_backfill.pipeline import Pipeline

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["create_target", "validate_declarations"]


def validate_declarations(source: DataFrame, pipeline: Pipeline) -> None:
    """Checks and key columns against the transform's output schema (an analysis, no job), before
    anything is written: a misspelt column or an expression Spark cannot parse is one line, exit 2."""
    from pyspark.sql import functions as F

    from prefect_backfill.errors import PipelineDefinitionError

    try:
        empty = pipeline.transform(source.limit(0))
        columns = empty.columns
    except Exception as exc:
        raise TransformError(
            f"the transform of {pipeline.name} failed on an empty input ({one_line(exc)}): fix the transform; "
            "nothing was written"
        ) from exc
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
