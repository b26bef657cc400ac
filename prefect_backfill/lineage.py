"""Which source partitions a chunk reads: its own, or, when the pipeline reads an upstream pipeline's
target through a roll-up, look-back or custom mapping (:mod:`prefect_backfill.cascade`), the upstream
partitions that mapping gives. A month of gold over daily silver reads the month's days; a 7-day rolling
window reads the 7 days before each partition too."""

from __future__ import annotations

from collections.abc import Sequence

from prefect_backfill.cascade import Identity, upstream_of
from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.registry import reads_from

__all__ = ["source_partitions"]


def source_partitions(pipeline: Pipeline, parts: Sequence[Partition]) -> list[Partition]:
    """The source partitions that ``parts`` of ``pipeline`` read, oldest first (``parts`` themselves
    unless the pipeline reads an upstream's target through a mapping other than identity)."""
    edge = reads_from(pipeline) if pipeline.upstream else None
    if edge is None or isinstance(edge[1].mapping, Identity):
        return sorted(parts)
    up, upstream = edge
    return sorted({s for p in parts for s in upstream_of(upstream.mapping, p, up.grain)})
