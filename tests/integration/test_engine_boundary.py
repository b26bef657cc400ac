"""The engine's boundary on real Spark + Delta: what Spark and Delta raise leaves the engine as the
package's error types (prefect_backfill.engine.failures), decided from Spark's error conditions, not from
the text of the error."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from prefect_backfill.demo import to_silver_orders
from prefect_backfill.engine import get_engine
from prefect_backfill.engine.committer import write_chunk
from prefect_backfill.engine.delta import SparkDeltaEngine
from prefect_backfill.engine.predicates import chunk_predicate
from prefect_backfill.errors import EngineCancelledError, RowsOutsidePartitionError
from prefect_backfill.partitions import Grain, parse_partition_key
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register

pytestmark = pytest.mark.spark


def _pipeline(bronze: str, tmp_path: Path, name: str, transform: Any) -> Pipeline:
    target = TableRef(str(tmp_path / "silver"))
    return register(Pipeline(name, TableRef(bronze), target, "order_date", transform, "1"), replace=True)


def test_deltas_replace_where_check_leaves_the_engine_as_rows_outside_the_partition(
    spark: Any, bronze: str, tmp_path: Path
) -> None:
    """The engine checks its output first; should a row still get past that, Delta's own check refuses the
    commit (DELTA_REPLACE_WHERE_MISMATCH) and the engine says so in the package's type."""
    p = _pipeline(bronze, tmp_path, "boundary_rows_outside", to_silver_orders)
    engine = get_engine()
    assert isinstance(engine, SparkDeltaEngine)
    engine.ensure_target(p)
    day = parse_partition_key("2024-01-01", Grain.DAY)
    other_day = to_silver_orders(spark.read.format("delta").load(bronze)).where(F.col("order_date") == "2024-01-02")
    with pytest.raises(RowsOutsidePartitionError, match="outside partition order_date=2024-01-01"):
        write_chunk(p, other_day, chunk_predicate("order_date", [day]), "boundary test", "2024-01-01")


def _slow(df: DataFrame) -> DataFrame:
    pause = F.udf(lambda amount: time.sleep(0.2) or amount, "double")
    return to_silver_orders(df).withColumn("amount_usd", pause(F.col("amount_usd")))


def test_a_job_cancelled_in_flight_leaves_the_engine_as_cancelled(spark: Any, bronze: str, tmp_path: Path) -> None:
    p = _pipeline(bronze, tmp_path, "boundary_cancelled", _slow)
    engine = get_engine()
    assert isinstance(engine, SparkDeltaEngine)
    engine.ensure_target(p)
    days = [parse_partition_key(d, Grain.DAY) for d in ("2024-01-01", "2024-01-02")]
    raised: list[BaseException] = []

    def work() -> None:
        try:
            engine.process_chunk(p, days, commit_tag="boundary cancel")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    while thread.is_alive() and not spark.sparkContext.statusTracker().getActiveJobsIds():
        time.sleep(0.1)
    engine.cancel(p)
    thread.join(120)
    assert len(raised) == 1 and isinstance(raised[0], EngineCancelledError), raised
    assert raised[0].__cause__ is not None  # Spark's own error kept as the cause (the trace file shows it)
