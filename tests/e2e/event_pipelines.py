"""The pipeline of the events e2e test (``BACKFILL_PIPELINE_MODULES=…,tests.e2e.event_pipelines``): the demo
bronze table under ``BACKFILL_DATA_DIR`` to its own silver table, with a transform that returns no rows
for ``EMPTY_DAY``, so the engine's check before commit fails that partition (its old rows stay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_backfill.demo import bronze_path, lake_root, to_silver_orders
from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["EMPTY_DAY", "NAME"]

NAME = "events_orders"
EMPTY_DAY = "2024-01-03"  # the last day: the other two stay one chunk (one commit)


def drops_a_day(orders: DataFrame) -> DataFrame:
    """A buggy filter: nothing for EMPTY_DAY."""
    from pyspark.sql import functions as F

    return to_silver_orders(orders).where(F.col("order_date") != F.lit(EMPTY_DAY).cast("date"))


events_orders = register(
    Pipeline(
        name=NAME,
        source=TableRef(bronze_path()),
        target=TableRef(f"{lake_root()}/silver/events_orders"),
        partition_column="order_date",
        transform=drops_a_day,
        version="1",
        grain=Grain.DAY,
        description="events e2e: demo orders with a buggy filter on one day",
    )
)
