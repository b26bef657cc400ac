"""Engines that measure orchestration alone: ``BACKFILL_ENGINE=prefect_backfill.testing:SleepEngine``.

Each partition "takes" ``BENCH_PARTITION_SECONDS`` (default 0: trivial work) of sleeping, which is what an
I/O-bound partition looks like to the orchestrator (the thread waits, the CPU is free). Everything around it
is real: the Prefect flow and task runs, the ledger's Delta appends, caching, artifacts.

Both classes subclass :class:`~prefect_backfill.engine.Engine` explicitly, so mypy checks them against the
protocol: a fake that drifts from the real interface fails type checking, not a benchmark run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from prefect_backfill.engine import ChunkOutcome, Engine, TableInfo
from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.snapshots import TableSnapshot

__all__ = ["PerPartitionLimitEngine", "SleepEngine"]


class SleepEngine(Engine):
    """Reads and writes nothing; ``process_chunk`` sleeps ``BENCH_PARTITION_SECONDS`` per partition."""

    def __init__(self) -> None:
        self.seconds = float(os.environ.get("BENCH_PARTITION_SECONDS", "0"))

    def describe(self, table: TableRef) -> TableInfo:
        return TableInfo(exists=True, table_id=f"sleep:{table.location}", partition_columns=("p",))

    def snapshot(self, table: TableRef, column: str, grain: Grain, version: int | None = None) -> TableSnapshot:
        return TableSnapshot.unknown()  # no data: the ledger alone decides

    def content_snapshot(
        self, table: TableRef, column: str, grain: Grain, version: int | None = None, keys: Sequence[Partition] = ()
    ) -> TableSnapshot:
        return TableSnapshot.unknown()

    def ensure_target(self, pipeline: Pipeline) -> TableInfo:
        return self.describe(pipeline.target)

    def process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None = None,
        source_bytes: int | None = None,
    ) -> ChunkOutcome:
        """Each partition of the chunk "takes" ``seconds`` (I/O-bound work does not shrink by packing)."""
        if self.seconds:
            time.sleep(self.seconds * len(partitions))
        if touch := os.environ.get("BENCH_TOUCH_DIR"):  # tests: which processes did the work
            Path(touch, str(os.getpid())).touch()
        return ChunkOutcome(table_version=None, rows={p.key: (1, 1) for p in partitions})

    def cancel(self, pipeline: Pipeline, partitions: Sequence[Partition] | None = None) -> None:
        return None

    def restore(self, pipeline: Pipeline, versions: Mapping[Partition, int], commit_tag: str) -> int | None:
        return None  # nothing was written, so nothing to put back


class PerPartitionLimitEngine(SleepEngine):
    """The anti-pattern the shared cap avoids, kept so the scale benchmark can measure it: each partition's
    sleep holds one slot of the global concurrency limit ``bench-per-partition`` (``BENCH_PER_PARTITION_LIMIT``
    slots, default 2), acquired and released per partition. Do not do this in real code (design.md §4)."""

    LIMIT_NAME = "bench-per-partition"

    def __init__(self) -> None:
        super().__init__()
        self.limit = int(os.environ.get("BENCH_PER_PARTITION_LIMIT", "2"))
        self._reset_limit()

    def _reset_limit(self) -> None:
        """Delete and recreate the limit: no slot left over from an earlier (killed) run, the wanted size."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            with suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(self.LIMIT_NAME)
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=self.LIMIT_NAME, limit=self.limit))

    def process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None = None,
        source_bytes: int | None = None,
    ) -> ChunkOutcome:
        from prefect.concurrency.sync import concurrency

        with concurrency(self.LIMIT_NAME, occupy=1, strict=False):
            return super().process_chunk(pipeline, partitions, commit_tag, rows_in, source_bytes)
