"""What a chunk's output is measured by before it is committed: the pipeline's checks, and the diff
against the rows it replaces (rows, sums, key changes). Spark work, but no writes: the engine
(:mod:`.delta`) calls these between computing a chunk and committing it, so a failed check leaves the
target as it was."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prefect_backfill import checks as checking
from prefect_backfill.diff import KeyChanges, PartitionDiff, numeric_columns
from prefect_backfill.engine.predicates import chunk_condition
from prefect_backfill.errors import CheckFailedError
from prefect_backfill.lineage import source_partitions
from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.snapshots import TableSnapshot, partition_key

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["aggregates", "check_chunk", "chunk_diff", "key_changes", "rows_in_source", "summed_columns"]


def summed_columns(pipeline: Pipeline, output: DataFrame) -> tuple[str, ...]:
    if not pipeline.diff:
        return ()
    available = numeric_columns(output.dtypes, exclude=(pipeline.partition_column, *pipeline.key))
    if pipeline.diff_columns is None:
        return available
    return tuple(c for c in pipeline.diff_columns if c in set(available))


def check_chunk(
    pipeline: Pipeline,
    output: DataFrame,
    keys: Sequence[str],
    rows_in: Mapping[str, int],
    rows_out: Mapping[str, int],
    values: Mapping[str, Mapping[str, Any]],
) -> None:
    """Raise CheckFailedError naming every partition that fails a declared check, each with its own
    first failure (check name, observed vs expected). Nothing has been committed yet."""
    if not pipeline.checks:
        return
    failures: dict[str, list[checking.Failure]] = {}
    for key in keys:
        found = checking.evaluate(pipeline.checks, key, rows_in.get(key, 0), rows_out[key], values.get(key, {}))
        if found:
            failures[key] = found
    for check in pipeline.checks:
        if isinstance(check, checking.Custom):
            for value, message in (check.fn(output) or {}).items():
                named = value if isinstance(value, str) else partition_key(value, pipeline.grain)
                if named is not None and named in rows_out:
                    failures.setdefault(named, []).append(checking.Failure(named, check.name, str(message), ""))
    if not failures:
        return
    column = pipeline.partition_column
    details = {
        key: (found[0].check, f"check {found[0]} ({column}={key}); the target partition was left as it was")
        for key, found in failures.items()
    }
    first = next(iter(details.values()))[1]
    raise CheckFailedError(
        f"{len(failures)} partition(s) failed checks, e.g. {first}",
        partitions=tuple(sorted(failures)),
        details=details,
    )


def chunk_diff(
    pipeline: Pipeline,
    current: DataFrame,
    output: DataFrame,
    parts: Sequence[Partition],
    summed: Sequence[str],
    rows_out: Mapping[str, int],
    values: Mapping[str, Mapping[str, Any]],
) -> dict[str, PartitionDiff]:
    """Each partition's rows and sums before (the old rows, as of the version this commit replaces)
    and after (from the grouped count), plus key changes when the pipeline declares a key."""
    from pyspark.sql import functions as F

    column = pipeline.partition_column
    old = current.where(chunk_condition(column, parts))
    old_summed = [c for c in summed if c in set(old.columns)]
    before: dict[str, dict[str, Any]] = {}
    for row in (
        old.groupBy(column)
        .agg(
            F.count(F.lit(1)).alias("_bf_n"),
            *[F.sum(F.col(c)).alias(f"_bf_s{summed.index(c)}") for c in old_summed],
        )
        .collect()
    ):
        found = partition_key(row[column], pipeline.grain)
        if found is not None:
            before[found] = row.asDict()
    changes = key_changes(pipeline, old, output, parts) if pipeline.key else {}
    out: dict[str, PartitionDiff] = {}
    for p in parts:
        b, a = before.get(p.key, {}), values.get(p.key, {})
        sums = {
            c: (_number(b.get(f"_bf_s{i}")) if b else None, _number(a.get(f"_bf_s{i}")) if a else None)
            for i, c in enumerate(summed)
        }
        out[p.key] = PartitionDiff(p.key, int(b.get("_bf_n") or 0), rows_out[p.key], sums, changes.get(p.key))
    return out


def key_changes(
    pipeline: Pipeline, old: DataFrame, new: DataFrame, parts: Sequence[Partition]
) -> dict[str, KeyChanges]:
    """Keys added, removed and changed (same key, another hash of the columns both versions have)."""
    from pyspark.sql import functions as F

    column, key = pipeline.partition_column, list(pipeline.key)
    if any(k not in old.columns for k in key):  # the old version had no such key: nothing to match
        return {}
    shared = [c for c in new.columns if c in set(old.columns) and c != column and c not in key]
    hashed = F.xxhash64(*[F.col(c) for c in shared]) if shared else F.lit(0)
    o = old.select(column, *key, hashed.alias("_old"))
    n = new.select(column, *key, hashed.alias("_new"))
    joined = o.join(n, on=[column, *key], how="full_outer")
    counted = (
        joined.groupBy(column)
        .agg(
            F.sum(F.when(F.col("_old").isNull(), 1).otherwise(0)).alias("added"),
            F.sum(F.when(F.col("_new").isNull(), 1).otherwise(0)).alias("removed"),
            F.sum(
                F.when(
                    F.col("_old").isNotNull() & F.col("_new").isNotNull() & (F.col("_old") != F.col("_new")), 1
                ).otherwise(0)
            ).alias("changed"),
        )
        .collect()
    )
    out: dict[str, KeyChanges] = {p.key: KeyChanges(0, 0, 0) for p in parts}
    for row in counted:
        found = partition_key(row[column], pipeline.grain)
        if found in out:
            out[found] = KeyChanges(int(row["added"]), int(row["removed"]), int(row["changed"]))
    return out


def _number(value: Any) -> float | None:
    """A sum as a JSON-friendly number (Spark returns Decimal for decimal columns)."""
    return None if value is None else float(value)


def aggregates(checks: Sequence[checking.Check]) -> list[Column]:
    """The aggregate columns the grouped count adds for ``checks`` (aliases ``_bf_c<i>_…``): the Spark half
    of the checks, whose definitions and verdicts (:mod:`prefect_backfill.checks`) load no Spark."""
    from pyspark.sql import functions as F

    out: list[Column] = []
    for i, check in enumerate(checks):
        if isinstance(check, checking.NotNull):
            any_null = F.lit(False)
            for column in check.columns_:
                any_null = any_null | F.col(column).isNull()
            out.append(F.sum(F.when(any_null, 1).otherwise(0)).alias(f"_bf_c{i}_bad"))
        elif isinstance(check, checking.Unique):
            keyed = F.lit(True)
            for column in check.columns_:
                keyed = keyed & F.col(column).isNotNull()
            out.append(F.sum(F.when(keyed, 1).otherwise(0)).alias(f"_bf_c{i}_keyed"))
            out.append(F.count_distinct(*[F.col(c) for c in check.columns_]).alias(f"_bf_c{i}_distinct"))
        elif isinstance(check, checking.Expect):
            out.append(F.sum(F.when(~F.expr(check.expression), 1).otherwise(0)).alias(f"_bf_c{i}_bad"))
    return out


def rows_in_source(
    pipeline: Pipeline, parts: Sequence[Partition], log: TableSnapshot, source: Callable[[], DataFrame]
) -> dict[str, int]:
    """Rows per source partition: from the source ``log``'s statistics (no job), or one grouped count of
    the ``source()`` where the log has none (a catalog table delta-rs cannot open, files written without
    stats)."""
    from pyspark.sql import functions as F

    if log.known:
        files = [log.partitions.get(p.key) for p in parts]
        if all(f is None or f.num_records is not None for f in files):
            return {p.key: (f.num_records or 0) if f is not None else 0 for p, f in zip(parts, files, strict=True)}
    column = pipeline.partition_column
    read = chunk_condition(column, source_partitions(pipeline, parts))  # a roll-up's days of each month, say
    counted = source().where(read).groupBy(column).agg(F.count(F.lit(1)).alias("n")).collect()
    found = {partition_key(r[column], pipeline.grain): int(r["n"]) for r in counted}
    return {p.key: found.get(p.key, 0) for p in parts}
