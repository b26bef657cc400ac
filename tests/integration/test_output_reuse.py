"""A chunk caches its transform's output only where that pays (prefect_backfill.engine.output_reuse): the
write computes it again (caching wide rows cost more time and memory than computing them twice), unless
the chunk is small, the transform runs Python UDFs, is not deterministic, or is read more than twice; the
pipeline's ``cache_output`` overrides it. Decided on real Spark plans; what is written is the same either
way, and the ledger records what the commit wrote."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.checks import Custom
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.engine import output_reuse
from prefect_backfill.engine.output_reuse import SMALL_CHUNK_BYTES, keep_output, plan_shape
from prefect_backfill.ledger import Ledger
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


def deduped(df: DataFrame) -> DataFrame:
    """One row per order and day (a window: a shuffle)."""
    first = Window.partitionBy("order_date", "order_id").orderBy(F.col("amount").desc())
    return to_silver_orders(df.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n"))


def with_udf(df: DataFrame) -> DataFrame:
    @F.udf("double")
    def same(value: float) -> float:
        return value

    return to_silver_orders(df).withColumn("amount_usd", same(F.col("amount_usd")))


def sampled(df: DataFrame) -> DataFrame:
    """Narrow, but other rows every time it is computed."""
    return to_silver_orders(df.where(F.rand() < 0.5))


def per_day(df: DataFrame) -> DataFrame:
    return df.groupBy("order_date").agg(F.sum("amount").alias("amount"))


def test_only_plans_that_read_filter_and_project_are_computed_again(lake: Lake, spark: Any) -> None:
    source = spark.read.format("delta").load(lake.bronze).where("order_date = DATE'2024-01-02'")
    narrow = lake.make(to_silver_orders, name="narrow")
    shape = plan_shape(to_silver_orders(source))
    assert shape is not None and "LogicalRelation" in shape.node_kinds and shape.deterministic, shape
    assert not keep_output(narrow, to_silver_orders(source)), shape
    for transform in (deduped, per_day):  # shuffles: computed again, on the columns the count needs
        pipeline = lake.make(transform, name=transform.__name__)
        assert not keep_output(pipeline, transform(source)), (transform.__name__, plan_shape(transform(source)))
    for transform in (with_udf, sampled, drawn):  # Python on every row; other rows when computed again
        pipeline = lake.make(transform, name=transform.__name__)
        assert keep_output(pipeline, transform(source)), (transform.__name__, plan_shape(transform(source)))
    # The pipeline's word wins either way; output read more than twice is cached.
    assert keep_output(lake.make(deduped, name="asked", cache_output=True), deduped(source))
    assert not keep_output(lake.make(with_udf, name="told", cache_output=False), with_udf(source))
    keyed = lake.make(to_silver_orders, name="keyed", key=("order_id",))
    assert keep_output(keyed, to_silver_orders(source))
    checked = lake.make(to_silver_orders, name="checked", checks=(Custom("none", lambda out: {}),))
    assert keep_output(checked, to_silver_orders(source))
    # A small chunk is cached (a second scan's fixed cost is more than the cache), a large one is not.
    assert keep_output(narrow, to_silver_orders(source), source_bytes=SMALL_CHUNK_BYTES - 1)
    assert not keep_output(narrow, to_silver_orders(source), source_bytes=SMALL_CHUNK_BYTES)


def test_a_plain_chunk_is_computed_again_one_with_a_python_udf_is_cached_and_both_write_every_row(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    persisted: list[str] = []
    concrete = type(spark.range(1))  # classic Spark's DataFrame class, which implements persist
    persist = concrete.persist

    def spy(self: DataFrame, *args: Any, **kwargs: Any) -> DataFrame:
        persisted.append(str(self.columns))
        return persist(self, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(concrete, "persist", spy)
    # The chunks here are a few kilobytes: as large ones, so that they are computed again.
    monkeypatch.setattr(output_reuse, "SMALL_CHUNK_BYTES", 0)
    narrow = lake.make(to_silver_orders, name="narrow_run")
    done = backfill(pipeline=narrow.name, start="2024-01-01", end="2024-01-04").to_dict()
    assert len(done["completed"]) == 4 and persisted == []
    written = spark.read.format("delta").load(lake.target)
    assert written.count() == spark.read.format("delta").load(lake.bronze).where("order_date <= '2024-01-04'").count()

    shuffled = lake.make(deduped, name="dedupe_run", target=str(lake.root / "silver" / "deduped"))
    done = backfill(pipeline=shuffled.name, start="2024-01-01", end="2024-01-04").to_dict()
    assert len(done["completed"]) == 4 and persisted == []
    python = lake.make(with_udf, name="udf_run", target=str(lake.root / "silver" / "udf"))
    done = backfill(pipeline=python.name, start="2024-01-01", end="2024-01-04").to_dict()
    assert len(done["completed"]) == 4 and persisted  # each chunk's output cached
    for other in ("deduped", "udf"):
        assert sorted(spark.read.format("delta").load(str(lake.root / "silver" / other)).collect()) == sorted(
            written.collect()
        )
    # As the small chunks they are, the plain ones are cached: the plan's bytes reach the decision.
    monkeypatch.setattr(output_reuse, "SMALL_CHUNK_BYTES", SMALL_CHUNK_BYTES)
    persisted.clear()
    small = lake.make(to_silver_orders, name="small_run", target=str(lake.root / "silver" / "small"))
    done = backfill(pipeline=small.name, start="2024-01-01", end="2024-01-04").to_dict()
    assert len(done["completed"]) == 4 and persisted


def drawn(df: DataFrame) -> DataFrame:
    """Half the rows, drawn anew each time it is computed (Python's random in a UDF: ``rand()`` has its
    seed fixed in the plan and gives the same rows again)."""

    @F.udf("boolean")
    def coin() -> bool:
        import random

        return random.random() < 0.5

    return to_silver_orders(df.where(coin.asNondeterministic()()))


def test_a_transform_told_not_to_cache_that_draws_other_rows_each_time_records_what_was_written(
    lake: Lake, spark: Any
) -> None:
    """The ledger's rows are the commit's (its files' statistics) when the write's computation gave
    other rows than the count's: told ``cache_output=False``, a random draw is computed twice."""
    told = lake.make(drawn, name="drawn_run", cache_output=False, allow_empty_output=True)
    done = backfill(pipeline=told.name, start="2024-01-01", end="2024-01-04").to_dict()
    assert len(done["completed"]) == 4
    written = {
        str(r["order_date"]): r["count"]
        for r in spark.read.format("delta").load(lake.target).groupBy("order_date").count().collect()
    }
    current = Ledger(lake.ledger).current(told.name)
    recorded = {key: state.rows_out for key, state in current.items()}
    assert recorded == written
    assert {key: json.loads(state.diff or "{}")["rows"][1] for key, state in current.items()} == written
    assert done["rows_written"] == sum(written.values())
