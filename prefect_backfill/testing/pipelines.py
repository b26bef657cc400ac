"""No-op pipelines for :class:`~prefect_backfill.testing.SleepEngine` (``BACKFILL_PIPELINE_MODULES=
prefect_backfill.testing.pipelines``): nothing is read or written but the ledger, beside a target folder
under ``BACKFILL_DATA_DIR/noop`` that is never created.

Their names (``bench_noop_day``, ``bench_noop_hour``) are the ones the benchmarks' recorded results and the
tests' ledgers use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register
from prefect_backfill.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["bench_noop_day", "bench_noop_hour"]


def _identity(df: DataFrame) -> DataFrame:
    return df


def _noop(grain: Grain) -> Pipeline:
    noop = get_settings().data_dir / "noop"
    return register(
        Pipeline(
            name=f"bench_noop_{grain.value}",
            source=TableRef(str((noop / "source").resolve())),
            target=TableRef(str((noop / grain.value).resolve())),
            partition_column="p",
            transform=_identity,
            version="1",
            grain=grain,
            description=f"no-op {grain.value} partitions (SleepEngine)",
        )
    )


bench_noop_day = _noop(Grain.DAY)
bench_noop_hour = _noop(Grain.HOUR)
