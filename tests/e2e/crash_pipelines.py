"""The pipeline of the crash tests (``BACKFILL_PIPELINE_MODULES=tests.e2e.crash_pipelines``).

A daily pipeline whose source and target come from the environment (``CRASH_BRONZE``, ``CRASH_SILVER``;
default: under ``BACKFILL_DATA_DIR``), so every test and benchmark points the real CLI at its own lake;
``CRASH_CLUSTER_BY`` (comma-separated columns) creates the target liquid-clustered instead of partitioned.
The transform is integer arithmetic only, so the test computes the exact expected rows without Spark
(:func:`expected_rows`), and it sleeps ``CRASH_SLEEP_S`` seconds on the driver per partition, so a kill
lands mid-run rather than after it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register
from prefect_backfill.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["NAME", "expected_rows", "to_silver"]

NAME = "crash_orders"
SILVER_COLUMNS = ("order_id", "order_date", "customer_id", "amount_cents", "amount_usd_cents")


def to_silver(orders: DataFrame) -> DataFrame:
    """amount_usd_cents = amount_cents * 11 div 10 (integers: exactly reproducible outside Spark)."""
    from pyspark.sql import functions as F

    time.sleep(float(os.environ.get("CRASH_SLEEP_S", "0.7")))  # runs on the driver, once per partition
    return orders.select(
        "order_id",
        "order_date",
        "customer_id",
        "amount_cents",
        F.expr("amount_cents * 11 div 10").alias("amount_usd_cents"),
    )


def expected_rows(bronze: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What :func:`to_silver` gives for these bronze rows, as sorted tuples of SILVER_COLUMNS."""
    return sorted(
        (r["order_id"], r["order_date"], r["customer_id"], r["amount_cents"], r["amount_cents"] * 11 // 10)
        for r in bronze
    )


def _location(variable: str, default: str) -> str:
    return os.environ.get(variable) or str((get_settings().data_dir / "crash" / default).resolve())


crash_orders = register(
    Pipeline(
        name=NAME,
        source=TableRef(_location("CRASH_BRONZE", "bronze/orders")),
        target=TableRef(_location("CRASH_SILVER", "silver/orders")),
        partition_column="order_date",
        transform=to_silver,
        version=os.environ.get("CRASH_VERSION", "1"),  # only bench/crash_matrix.py --control changes it
        grain=Grain.DAY,
        cluster_by=tuple(c for c in os.environ.get("CRASH_CLUSTER_BY", "").split(",") if c),
        description="crash tests: bronze orders -> silver with amount_usd_cents, slow on purpose",
    )
)
