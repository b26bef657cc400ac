"""The demo lakehouse: a deterministic bronze ``orders`` table, the ``demo_orders`` pipeline (bronze → silver,
daily) and ``demo_revenue`` (silver → gold, monthly revenue per country).

The story of the seed: silver ``orders`` carries ``amount_usd``; version 1 used the wrong exchange
factor, version 2 fixes it to 1.1, and six months (2024-01-01 … 2024-06-30, 182 days) must be
reprocessed. Gold was built from the wrong silver: the silver backfill marks its six months STALE
(:mod:`prefect_backfill.cascade`, a day → month roll-up), and gold's next default run rebuilds exactly them.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from prefect_backfill.cascade import RollUp, Upstream
from prefect_backfill.checks import Expect, NotNull, RowRatio, Unique
from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register
from prefect_backfill.settings import get_settings
from prefect_backfill.storage import on_object_store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "DEMO_END",
    "DEMO_START",
    "bronze_path",
    "generate_orders",
    "gold_path",
    "silver_path",
    "to_gold_revenue",
    "to_silver_orders",
    "to_silver_orders_v1",
    "write_version_one",
]

DEMO_START = "2024-01-01"
DEMO_END = "2024-06-30"


def lake_root() -> str:
    """``BACKFILL_DEMO_LAKE`` (a folder or ``s3a://bucket/prefix``), else ``<data_dir>/lake``."""
    settings = get_settings()
    if settings.demo_lake:
        return settings.demo_lake.rstrip("/")
    return str((settings.data_dir / "lake").resolve())


def bronze_path() -> str:
    return f"{lake_root()}/bronze/orders"


def silver_path() -> str:
    return f"{lake_root()}/silver/orders"


def gold_path() -> str:
    return f"{lake_root()}/gold/revenue"


#: Bronze orders carry no country: the demo's gold looks it up from the customer id, a stand-in for the join
#: with a customer dimension a real gold table would make.
COUNTRIES = ("DE", "FR", "NL", "PL", "US")


def to_gold_revenue(silver: DataFrame) -> DataFrame:
    """Revenue and orders per month and country; ``order_date`` holds the month's first day (the partition)."""
    from pyspark.sql import functions as F

    index = (F.col("customer_id") % len(COUNTRIES) + 1).cast("int")
    country = F.element_at(F.array(*[F.lit(c) for c in COUNTRIES]), index)
    return (
        silver.groupBy(F.trunc("order_date", "month").alias("order_date"), country.alias("country"))
        .agg(F.round(F.sum("amount_usd"), 2).alias("revenue_usd"), F.count(F.lit(1)).alias("orders"))
        .select("order_date", "country", "revenue_usd", "orders")
    )


def to_silver_orders(orders: DataFrame) -> DataFrame:
    """Version 2: amounts in USD at the corrected factor 1.1 (version 1 used 1.0)."""
    from pyspark.sql import functions as F

    return orders.select(
        "order_id",
        "order_date",
        "customer_id",
        "amount",
        F.round(F.col("amount") * F.lit(1.1), 2).alias("amount_usd"),
    )


def to_silver_orders_v1(orders: DataFrame) -> DataFrame:
    """Version 1, the bug: amount_usd = amount (factor 1.0). What the daily job wrote before the fix."""
    from pyspark.sql import functions as F

    return to_silver_orders(orders).withColumn("amount_usd", F.col("amount"))


def write_version_one(source: str, target: str) -> int:
    """The silver table as the buggy daily job left it: version 1 over the whole bronze table, one job.
    The demo then backfills version 2 over it, so its canary diff shows the fix (amount_usd +10 %)."""
    from prefect_backfill.engine.spark import get_spark

    spark = get_spark(object_store=on_object_store(source) or on_object_store(target))
    silver = to_silver_orders_v1(spark.read.format("delta").load(source))
    silver.write.format("delta").mode("overwrite").partitionBy("order_date").save(target)
    return int(silver.count())


def generate_orders(
    path: str,
    start: str = DEMO_START,
    end: str = DEMO_END,
    rows_per_day: int = 2_000,
) -> int:
    """Write a deterministic bronze orders table partitioned by ``order_date``; returns its row count.

    Same arguments, same bytes of data: tests and benchmarks compare tables across runs.
    """
    from pyspark.sql import functions as F

    from prefect_backfill.engine.spark import get_spark

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    days = (last - first).days + 1
    total = days * rows_per_day
    spark = get_spark(object_store=on_object_store(path))
    orders = spark.range(total).select(
        F.col("id").alias("order_id"),
        F.date_add(F.lit(first), (F.col("id") / F.lit(rows_per_day)).cast("int")).alias("order_date"),
        (F.col("id") * 7919 % 5000).alias("customer_id"),
        F.round((F.col("id") * 104729 % 100000) / F.lit(100.0), 2).alias("amount"),
    )
    (
        orders.repartition(max(1, min(days, 16)), "order_date")
        .write.format("delta")
        .mode("overwrite")
        .partitionBy("order_date")
        .save(path)
    )
    return total


demo_orders = register(
    Pipeline(
        name="demo_orders",
        source=TableRef(bronze_path()),
        target=TableRef(silver_path()),
        partition_column="order_date",
        transform=to_silver_orders,
        version="2",
        grain=Grain.DAY,
        description="bronze orders -> silver orders with amount_usd = amount * 1.1",
        # Checked on every partition before it replaces the old rows (no extra pass but one distinct count).
        checks=(NotNull("order_id"), Unique("order_id"), Expect("amount_usd >= 0"), RowRatio(1.0, 1.0)),
        key=("order_id",),  # the diff counts orders added, removed and changed per day
    )
)

demo_revenue = register(
    Pipeline(
        name="demo_revenue",
        source=TableRef(silver_path()),
        target=TableRef(gold_path()),
        partition_column="order_date",
        transform=to_gold_revenue,
        version="1",
        grain=Grain.MONTH,
        description="silver orders -> gold revenue per month and country (a roll-up of demo_orders' days)",
        upstream=(Upstream("demo_orders", RollUp()),),  # cascade: mark (the default)
        checks=(NotNull("country"), Expect("revenue_usd >= 0")),
    )
)
