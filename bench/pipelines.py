"""The bench pipeline, registered the way a user registers theirs (``BACKFILL_PIPELINE_MODULES=bench.pipelines``).

It is the demo pipeline (same transform, same version) pointed at the bench's own bronze copy, with the
target under the scenario's ``BACKFILL_DATA_DIR``: every scenario writes its own target and ledger, and
all of them read the same source, so their results are comparable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from prefect_backfill import Pipeline, TableRef, register
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.partitions import Grain
from prefect_backfill.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["PIPELINE_NAME", "source_path", "target_path"]

PIPELINE_NAME = "bench_orders"
_DEFAULT_SOURCE = Path(__file__).resolve().parent / "out" / "bronze" / "orders"


def source_path() -> str:
    """The shared bronze table; ``BENCH_SOURCE_PATH`` overrides it (run.py always sets it explicitly)."""
    return str(Path(os.environ.get("BENCH_SOURCE_PATH", _DEFAULT_SOURCE)).resolve())


def target_path() -> str:
    """The scenario's own silver table: beside it the package keeps its ledger (``_backfill_progress``)."""
    return str((get_settings().data_dir / "silver" / "orders").resolve())


bench_orders = register(
    Pipeline(
        name=PIPELINE_NAME,
        source=TableRef(source_path()),
        target=TableRef(target_path()),
        partition_column="order_date",
        transform=to_silver_orders,
        version="2",
        grain=Grain.DAY,
        description="benchmark copy of demo_orders: bench bronze -> scenario silver",
    )
)


def _identity(df: DataFrame) -> DataFrame:
    return df


# For BACKFILL_ENGINE=bench.engines:SleepEngine (orchestration alone): nothing is read or written but
# the ledger, beside a target folder that is never created.
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
