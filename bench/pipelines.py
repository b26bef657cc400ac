"""The bench pipeline, registered the way a user registers theirs (``BACKFILL_PIPELINE_MODULES=bench.pipelines``).

It is the demo pipeline (same transform, same version) pointed at the bench's own bronze copy, with the
target under the scenario's ``BACKFILL_DATA_DIR``: every scenario writes its own target and ledger, and
all of them read the same source, so their results are comparable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_backfill import Pipeline, TableRef, register
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.partitions import Grain
from prefect_backfill.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["HOURLY_NAME", "PIPELINE_NAME", "REAL_DEDUPE_NAME", "REAL_NAME", "WIDE_NAME", "source_path", "target_path"]

PIPELINE_NAME, WIDE_NAME, HOURLY_NAME = "bench_orders", "bench_wide", "bench_events_hourly"
REAL_NAME, REAL_DEDUPE_NAME = "bench_real", "bench_real_dedupe"
_OUT = Path(__file__).resolve().parent / "out"


def source_path(variable: str = "BENCH_SOURCE_PATH", default: Path = _OUT / "bronze" / "orders") -> str:
    """A shared bronze table; ``BENCH_SOURCE_PATH`` (``BENCH_WIDE_SOURCE_PATH``, ``BENCH_HOURLY_SOURCE_PATH``)
    overrides it (the harness always sets them explicitly)."""
    return str(Path(os.environ.get(variable, default)).resolve())


def target_path(name: str = "orders") -> str:
    """The scenario's own silver table: beside it the package keeps its ledger (``_backfill_progress``)."""
    return str((get_settings().data_dir / "silver" / name).resolve())


def wide_to_silver(orders: DataFrame) -> DataFrame:
    """The demo's transform that keeps every column (the payload too: the bytes are the point)."""
    from pyspark.sql import functions as F

    return orders.withColumn("amount_usd", F.round(F.col("amount") * F.lit(1.1), 2))


def dedupe_to_silver(orders: DataFrame) -> DataFrame:
    """A silver clean-up that needs a shuffle: one row per order and day (the highest amount wins), then
    ``amount_usd``. Keyed by the partition column too, so it is partition-local: a chunk of days gives the
    same rows as one day at a time, and as one job over all of them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("order_date", "order_id").orderBy(F.col("amount").desc())
    kept = orders.withColumn("_bf_rank", F.row_number().over(latest)).where(F.col("_bf_rank") == 1)
    return wide_to_silver(kept.drop("_bf_rank"))


def events_to_silver(events: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return events.withColumn("value", F.col("value") * 2)


def _register(name: str, source: str, target: str, column: str, transform: Any, version: str, **more: Any) -> Pipeline:
    return register(Pipeline(name, TableRef(source), TableRef(target_path(target)), column, transform, version, **more))


bench_orders = _register(
    PIPELINE_NAME,
    source_path(),
    "orders",
    "order_date",
    to_silver_orders,
    "2",
    description="benchmark copy of demo_orders: bench bronze -> scenario silver",
)
# Bronze orders with ~1 KB of payload per row (bench/datagen.py): megabytes per day with few rows.
bench_wide = _register(
    WIDE_NAME,
    source_path("BENCH_WIDE_SOURCE_PATH", _OUT / "bronze_wide" / "orders"),
    "wide",
    "order_date",
    wide_to_silver,
    "1",
    description="wide orders (1 KB payload per row) -> silver, for the byte-budget scenarios",
)
# Real hourly partitions on Spark + Delta: a timestamp partition column, 5-20 rows per hour.
bench_events_hourly = _register(
    HOURLY_NAME,
    source_path("BENCH_HOURLY_SOURCE_PATH", _OUT / "bronze_hourly" / "events"),
    "events",
    "event_hour",
    events_to_silver,
    "1",
    grain=Grain.HOUR,
    description="hourly events (5-20 rows per hour) -> silver",
)
# Real sizes (bench/real_sizes.py): days of 1,000,000 wide rows, gigabytes of source, cached in .cache/bench-real.
_REAL_SOURCE = ("BENCH_REAL_SOURCE_PATH", _OUT / "bronze_real" / "orders")
bench_real = _register(
    REAL_NAME,
    source_path(*_REAL_SOURCE),
    "real",
    "order_date",
    wide_to_silver,
    "1",
    description="real-size wide orders -> silver, every column kept (narrow: no shuffle)",
)
bench_real_dedupe = _register(
    REAL_DEDUPE_NAME,
    source_path(*_REAL_SOURCE),
    "real_dedupe",
    "order_date",
    dedupe_to_silver,
    "1",
    description="real-size wide orders -> silver, one row per order and day (a shuffle)",
)
