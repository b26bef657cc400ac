"""Prefect tasks of prefect-backfill."""

from tasks.partition import backfill_batch, backfill_partition

__all__ = ["backfill_batch", "backfill_partition"]
