"""Bronze tables of the benchmark that the demo generator does not make (deterministic, like it).

- :func:`generate_wide`: the demo's orders plus a ``payload`` of incompressible text, so that a day
  holds megabytes of source with few rows (the byte-budget and big-partition scenarios);
- :func:`generate_hourly`: events partitioned by the hour (a timestamp column), a varying 5-20 rows
  per hour (the real hourly scenario: one year is 8,784 partitions, one file each).
"""

from __future__ import annotations

from datetime import date, datetime

__all__ = ["generate_hourly", "generate_wide", "hourly_rows"]


def generate_wide(path: str, start: str, end: str, rows_per_day: int, payload_bytes: int = 1024) -> int:
    """Orders with a ``payload`` column of ``payload_bytes`` random hex characters per row (sha2 of the
    id: incompressible, so the Parquet bytes are about ``rows × payload_bytes``); returns the rows."""
    from pyspark.sql import functions as F

    from prefect_backfill.engine.spark import get_spark

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    days = (last - first).days + 1
    total = days * rows_per_day
    pieces = max(1, payload_bytes // 128)  # sha2-512 gives 128 hex characters
    payload = F.concat(*(F.sha2(F.concat_ws(":", F.col("id").cast("string"), F.lit(i)), 512) for i in range(pieces)))
    orders = (
        get_spark()
        .range(total)
        .select(
            F.col("id").alias("order_id"),
            F.date_add(F.lit(first), (F.col("id") / F.lit(rows_per_day)).cast("int")).alias("order_date"),
            (F.col("id") * 7919 % 5000).alias("customer_id"),
            F.round((F.col("id") * 104729 % 100000) / F.lit(100.0), 2).alias("amount"),
            payload.alias("payload"),
        )
    )
    (
        orders.repartition(max(1, min(days, 32)), "order_date")
        .write.format("delta")
        .mode("overwrite")
        .partitionBy("order_date")
        .save(path)
    )
    return total


def hourly_rows(hour_index: int) -> int:
    """Rows in the ``hour_index``-th hour: 5 to 20, varying (the same formula as the generator's)."""
    return 5 + (hour_index * 7) % 16


def generate_hourly(path: str, start: str, end: str) -> int:
    """Events of every hour from ``start`` (a date, first hour) to ``end`` (a date, last hour), partitioned
    by ``event_hour``, 5-20 rows per hour; returns the rows."""
    from pyspark.sql import functions as F

    from prefect_backfill.engine.spark import get_spark

    first = datetime.fromisoformat(start)
    hours = int((datetime.fromisoformat(end) - first).total_seconds() // 3600) + 24
    base = F.lit(first).cast("timestamp_ntz").cast("timestamp")
    events = (
        get_spark()
        .range(hours)
        .select(
            F.col("id").alias("hour_index"),
            F.timestamp_add("HOUR", F.col("id").cast("int"), base).alias("event_hour"),
            F.explode(F.sequence(F.lit(1), (F.lit(5) + (F.col("id") * 7) % 16).cast("int"))).alias("n"),
        )
        .select(
            (F.col("hour_index") * 100 + F.col("n")).alias("event_id"),
            "event_hour",
            ((F.col("hour_index") * 31 + F.col("n")) % 1000).alias("value"),
        )
    )
    events.repartition(16, "event_hour").write.format("delta").mode("overwrite").partitionBy("event_hour").save(path)
    return sum(hourly_rows(i) for i in range(hours))
