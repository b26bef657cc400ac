"""Never a false COMPLETE: the ledger is checked against the tables' logs before anything is skipped or
served from the cache (real Spark + Delta + Prefect). Each case ends with the right data or a clear
failure: an empty output, a deleted or recreated target, a partition deleted by another writer, a
changed source after an interrupted reprocess, a changed source with a lost ledger."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.demo import generate_orders, to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.planning import Status
from prefect_backfill.preparing import prepare
from prefect_backfill.request import BackfillRequest
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark

DAYS = ("2024-01-01", "2024-01-03")


def drops_the_fifth(df: DataFrame) -> DataFrame:
    """A buggy filter: no rows at all for 2024-01-02."""
    return to_silver_orders(df).where(F.col("order_date") != F.lit("2024-01-02").cast("date"))


def rows(spark: Any, path: str, day: str | None = None) -> list[tuple[Any, ...]]:
    df = spark.read.format("delta").load(path)
    if day is not None:
        df = df.where(F.col("order_date") == F.lit(day).cast("date"))
    return sorted(tuple(r) for r in df.select("order_id", "order_date", "amount", "amount_usd").collect())


def expected(spark: Any, bronze: str) -> list[tuple[Any, ...]]:
    """What a clean run writes: the transform of the bronze table as it is now."""
    out = to_silver_orders(spark.read.format("delta").load(bronze)).where(
        F.col("order_date").between(F.lit(DAYS[0]).cast("date"), F.lit(DAYS[1]).cast("date"))
    )
    return sorted(tuple(r) for r in out.select("order_id", "order_date", "amount", "amount_usd").collect())


def due(name: str, **kw: Any) -> dict[str, str]:
    prepared = prepare(BackfillRequest.build(pipeline=name, start=DAYS[0], end=DAYS[1], **kw))
    return dict(prepared.plan.why)


def statuses(lake: Lake, name: str) -> dict[str, Status]:
    return {k: s.status for k, s in Ledger(lake.ledger).current(name).items()}


def test_an_empty_output_fails_the_partition_and_keeps_its_rows(lake: Lake, spark: Any) -> None:
    good = lake.make(to_silver_orders, version="1")
    backfill(pipeline=good.name, start=DAYS[0], end=DAYS[1], retries=0)
    before = rows(spark, lake.target, "2024-01-02")
    assert len(before) == 40

    buggy = lake.make(drops_the_fifth, version="2")
    with pytest.raises(BackfillFailedError) as failure:
        backfill(pipeline=buggy.name, start=DAYS[0], end=DAYS[1], retries=2, retry_delay_seconds=0)
    assert failure.value.failed == ("2024-01-02",)
    assert "returned no rows for order_date=2024-01-02 from 40 source rows" in failure.value.errors["2024-01-02"]
    assert rows(spark, lake.target, "2024-01-02") == before  # old rows kept
    assert statuses(lake, buggy.name)["2024-01-02"] is Status.FAILED
    attempts = [
        e
        for e in Ledger(lake.ledger).events(buggy.name).to_pylist()
        if e["status"] == "RUNNING" and e["version"] == "2"
    ]
    assert len([e for e in attempts if e["partition"] == "2024-01-02"]) == 1  # a validation failure: no retry

    allowed = lake.make(drops_the_fifth, version="2", allow_empty_output=True)
    summary = backfill(pipeline=allowed.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert summary["completed"] == ["2024-01-02"] and rows(spark, lake.target, "2024-01-02") == []
    assert due(allowed.name) == {}  # an allowed empty partition stays complete with no files


def test_a_deleted_target_is_rebuilt_not_resumed(lake: Lake, spark: Any) -> None:
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0)
    shutil.rmtree(lake.target)
    assert set(due(p.name).values()) == {"target table missing"}
    summary = backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert sorted(summary["completed"]) == ["2024-01-01", "2024-01-02", "2024-01-03"] and summary["cached"] == []
    assert rows(spark, lake.target) == expected(spark, lake.bronze)
    assert due(p.name) == {}


def test_a_recreated_target_and_a_partition_deleted_by_another_writer_are_written_again(lake: Lake, spark: Any) -> None:
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0)
    schema = spark.read.format("delta").load(lake.target).schema
    shutil.rmtree(lake.target)
    spark.createDataFrame([], schema).write.format("delta").partitionBy("order_date").save(lake.target)
    assert set(due(p.name).values()) == {"target table recreated since it was written"}
    backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0)
    assert rows(spark, lake.target) == expected(spark, lake.bronze)

    # Another writer deletes one day: the ledger still says COMPLETE, the log says it is gone.
    spark.sql(f"DELETE FROM delta.`{lake.target}` WHERE order_date = DATE '2024-01-03'")
    assert due(p.name) == {"2024-01-03": "partition missing from the target"}
    summary = backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert summary["completed"] == ["2024-01-03"] and summary["cached"] == []  # not served from the cache
    assert rows(spark, lake.target) == expected(spark, lake.bronze)


def test_changed_source_after_an_interrupted_reprocess_is_recomputed_not_cached(
    lake: Lake, spark: Any, tmp_path: Any
) -> None:
    bronze = str(tmp_path / "bronze" / "orders")
    generate_orders(bronze, DAYS[0], DAYS[1], rows_per_day=20)
    p = lake.make(to_silver_orders, source=bronze)
    backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0)

    # Late data corrected one day of bronze.
    day = spark.read.format("delta").load(bronze).where(F.col("order_date") == F.lit("2024-01-02").cast("date"))
    (
        day.withColumn("amount", F.col("amount") + 1)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", "order_date = DATE '2024-01-02'")
        .save(bronze)
    )
    # A `--reprocess all` was interrupted: it claimed everything and left 2024-01-02 RUNNING.
    ledger = Ledger(lake.ledger)
    ledger.record(
        [
            LedgerEvent("killed-run", p.name, key, status, p.version, p.fingerprint, started_at=datetime.now(UTC))
            for key in ("2024-01-01", "2024-01-02", "2024-01-03")
            for status in (Status.PENDING,)
        ]
    )
    reasons = due(p.name)
    assert set(reasons) == {"2024-01-01", "2024-01-02", "2024-01-03"}  # interrupted claims are due again

    summary = backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert "2024-01-02" in summary["completed"]  # computed, not "cached" from before the change
    assert rows(spark, lake.target) == expected(spark, bronze)
    assert statuses(lake, p.name) == dict.fromkeys(("2024-01-01", "2024-01-02", "2024-01-03"), Status.COMPLETE)

    # The same change with a lost ledger: the cache serves only what the source still holds.
    spark.sql(f"UPDATE delta.`{bronze}` SET amount = amount + 1 WHERE order_date = DATE '2024-01-03'")
    shutil.rmtree(lake.ledger)
    summary = backfill(pipeline=p.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert sorted(summary["cached"]) == ["2024-01-01", "2024-01-02"] and summary["completed"] == ["2024-01-03"]
    assert rows(spark, lake.target) == expected(spark, bronze)
    assert due(p.name) == {}  # the rebuilt ledger agrees with the logs
