"""A no-op engine for measuring orchestration alone: ``BACKFILL_ENGINE=bench.engines:SleepEngine``.

Each partition "takes" ``BENCH_PARTITION_SECONDS`` (default 0: trivial work) of sleeping, which is what
an I/O-bound partition looks like to the orchestrator (the thread waits, the CPU is free). Everything
around it is real: the Prefect flow and task runs, the ledger's Delta appends, caching, artifacts.
"""

from __future__ import annotations

import os
import time

from prefect_backfill.engine import PartitionOutcome, TableInfo
from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline, TableRef

__all__ = ["SleepEngine"]


class SleepEngine:
    def __init__(self) -> None:
        self.seconds = float(os.environ.get("BENCH_PARTITION_SECONDS", "0"))

    def describe(self, table: TableRef) -> TableInfo:
        return TableInfo(exists=True, table_id=f"sleep:{table.location}", partition_columns=("p",))

    def ensure_target(self, pipeline: Pipeline) -> TableInfo:
        return self.describe(pipeline.target)

    def process_partition(self, pipeline: Pipeline, partition: Partition, commit_tag: str) -> PartitionOutcome:
        if self.seconds:
            time.sleep(self.seconds)
        return PartitionOutcome(rows_in=1, rows_out=1, table_version=None)
