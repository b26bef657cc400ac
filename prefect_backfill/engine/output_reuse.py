"""Whether a chunk keeps its transform's output in Spark's cache between the pass that counts and checks
it and the write (``persist``), or lets the write compute it again.

Why the write computes it again by default: the count pass needs a few narrow columns (the rows per
partition, the sums the diff and the checks use), and on Parquet Spark then reads just those columns; the
write reads and transforms the chunk once, as one Spark job over the same rows would. Caching instead
builds Spark's in-memory columnar copy of every column of the output and reads it back for the write.
Measured on 30 days of 1,000,000 wide rows (docs/real-size-benchmarks.md): cached, a run took 3.3x the one
job's time and 2.6x its Spark task CPU (371 s against 113 s; computed again, 268 s), and building the cache
ran a 2g driver out of memory in 7-day chunks (``ColumnBuilder.ensureFreeSpace``) where the job and the
uncached chunks fit.

It is cached where computing it twice would be wrong or is likely to cost more: a plan that is not
deterministic (the write would draw other rows than were counted and checked), a plan that runs Python
code on the rows (UDFs, pandas and Arrow functions: a second pass of every row through a Python worker,
assumed dearer than the cache, not measured here), and an output read more than twice (custom checks, a
declared key's diff). The decision reads the *kinds* of the optimized logical plan's nodes (their
classes) and its ``deterministic`` flag, never the plan's text. ``Pipeline.cache_output`` overrides it.

It is cached too where the chunk's source is small (under :data:`SMALL_CHUNK_BYTES`, from the plan's read of
the log): there a second scan costs its fixed part (the Delta snapshot, the file listing, a job's stages)
and the cache almost nothing. Measured on the integration tests' chunks (a few kilobytes each): computing
again made ``tests/integration/test_backfill.py`` take 285.7 s against 216.3 s before it and 217.5 s with
the output cached (one process, same machine). On the real sizes, a chunk's source is 135 MiB a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prefect_backfill.pipeline import Pipeline

__all__ = ["PYTHON_NODES", "SMALL_CHUNK_BYTES", "PlanShape", "cheap_to_recompute", "keep_output", "plan_shape"]

#: Below this many bytes of source, a chunk's output is cached (see the module's docstring): well under
#: the 135 MiB a day of the real-size benchmark, where computing again won, and well over the few MiB of
#: the small chunks where caching won. Between them nothing was measured.
SMALL_CHUNK_BYTES = 16 * 1024 * 1024

#: Logical plan nodes that run Python code on the rows: computing them twice costs a second pass of
#: every row through a Python worker.
PYTHON_NODES = frozenset(
    {
        "BatchEvalPython",
        "ArrowEvalPython",
        "BatchEvalPythonUDTF",
        "ArrowEvalPythonUDTF",
        "MapInPandas",
        "MapInArrow",
        "FlatMapGroupsInPandas",
        "FlatMapGroupsInArrow",
        "FlatMapCoGroupsInPandas",
        "FlatMapCoGroupsInArrow",
        "FlatMapGroupsInPandasWithState",
    }
)


@dataclass(frozen=True)
class PlanShape:
    """What the decision needs of a plan: the kinds (classes) of its nodes, and whether it computes the
    same rows every time (no ``rand()``, no ``uuid()``, no non-deterministic UDF)."""

    node_kinds: tuple[str, ...]
    deterministic: bool


def cheap_to_recompute(shape: PlanShape) -> bool:
    """True if computing the plan again gives the very rows that were counted (it is deterministic) and
    runs no Python code on them (no node of :data:`PYTHON_NODES`)."""
    return shape.deterministic and not PYTHON_NODES.intersection(shape.node_kinds)


def plan_shape(output: DataFrame) -> PlanShape | None:
    """The shape of ``output``'s optimized logical plan (classic Spark), or None where the plan cannot be
    read (Spark Connect has no handle on the JVM's plan)."""
    jdf: Any = getattr(output, "_jdf", None)
    if jdf is None:
        return None
    root = jdf.queryExecution().optimizedPlan()
    kinds: list[str] = []
    pending = [root]
    while pending:
        node = pending.pop()
        kinds.append(str(node.getClass().getSimpleName()))
        children = node.children()
        pending.extend(children.apply(i) for i in range(children.size()))
    return PlanShape(tuple(kinds), bool(root.deterministic()))


def keep_output(pipeline: Pipeline, output: DataFrame, source_bytes: int | None = None) -> bool:
    """Cache the chunk's output? ``pipeline.cache_output`` if set; else yes where the output is read more
    than twice, the chunk's ``source_bytes`` are few, or computing it again would give other rows or run
    Python code again; no otherwise."""
    if pipeline.cache_output is not None:
        return pipeline.cache_output
    from prefect_backfill.checks import Custom

    if (pipeline.key and pipeline.diff) or any(isinstance(check, Custom) for check in pipeline.checks):
        return True  # read a third time (key changes, custom checks): computing it once is cheaper
    if source_bytes is not None and source_bytes < SMALL_CHUNK_BYTES:
        return True  # a second scan's fixed cost is more than caching so little
    shape = plan_shape(output)
    return shape is None or not cheap_to_recompute(shape)
