"""Prefect tasks: the chunk of consecutive partitions (one Spark job, one Delta commit, per-partition records)."""

from tasks.chunk import backfill_chunk

__all__ = ["backfill_chunk"]
