"""Execute by size, record by partition, on real Spark + Delta + Prefect: chunk writes equal one-by-one
writes, a poison partition inside a chunk fails alone and keeps its old rows, complete partitions split
the chunks, and the night window's hard stop cancels a running chunk without writing half of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill import window
from prefect_backfill.demo import generate_orders, to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark

POISON = "2024-01-17"
STARTED: list[int] = []


def rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())


def write_commits(path: str) -> list[dict[str, Any]]:
    """The partition overwrites (replaceWhere commits) of a table, newest first; not its creation."""
    return [c for c in DeltaTable(path).history() if "predicate" in (c.get("operationParameters") or {})]


def poisoned(df: DataFrame) -> DataFrame:
    """Version 2 fails at run time, inside Spark, on one day only."""
    bad = F.col("order_date") == F.lit(POISON).cast("date")
    out = to_silver_orders(df).withColumn("amount_usd", F.col("amount_usd") * 2)
    return out.withColumn("amount_usd", F.when(bad, F.raise_error(F.lit("poison row"))).otherwise(F.col("amount_usd")))


def slow(df: DataFrame) -> DataFrame:
    """The demo transform, 0.1 s per row in a Python UDF: a chunk that is still running when cancelled."""
    STARTED.append(1)

    @F.udf("double")
    def crawl(value: float) -> float:
        time.sleep(0.1)
        return value

    return to_silver_orders(df).withColumn("amount_usd", crawl(F.col("amount_usd")))


def slow_to_plan(df: DataFrame) -> DataFrame:
    """:func:`slow`, built slowly: the hard stop comes while the chunk has no Spark job running yet."""
    built = slow(df)
    time.sleep(1.5)  # three ticks of the hard-stop watchdog
    return built


def test_chunk_writes_equal_one_partition_per_job_row_for_row(lake: Lake, spark: Any) -> None:
    chunked = lake.make(to_silver_orders, name="chunked")
    one_by_one = lake.make(to_silver_orders, name="one_by_one", target=str(lake.root / "silver" / "single"))
    a = backfill(pipeline=chunked.name, start="2024-01-01", end="2024-01-08", max_concurrency=2).to_dict()
    b = backfill(pipeline=one_by_one.name, start="2024-01-01", end="2024-01-08", chunk_partitions=1).to_dict()
    assert len(a["completed"]) == len(b["completed"]) == 8
    assert rows(spark, lake.target) == rows(spark, str(lake.root / "silver" / "single"))
    assert len(write_commits(lake.target)) == 2 and len(write_commits(str(lake.root / "silver" / "single"))) == 8
    ledger = Ledger(lake.ledger).current(chunked.name)
    assert {s.rows_out for s in ledger.values()} == {40} and {s.rows_in for s in ledger.values()} == {40}
    assert len({s.partition for s in ledger.values()}) == 8


def test_a_poison_partition_in_a_chunk_of_30_fails_alone_and_keeps_its_old_rows(
    lake: Lake, spark: Any, tmp_path: Any
) -> None:
    bronze = str(tmp_path / "bronze30")
    generate_orders(bronze, "2024-01-01", "2024-01-30", rows_per_day=5)
    good = lake.make(to_silver_orders, version="1", source=bronze)
    backfill(pipeline=good.name, start="2024-01-01", end="2024-01-30", max_concurrency=1)
    before = rows(spark, lake.target)
    old_poison = [r for r in before if str(r[1]) == POISON]

    bad = lake.make(poisoned, version="2", source=bronze)
    with pytest.raises(BackfillFailedError) as failure:
        backfill(pipeline=bad.name, start="2024-01-01", end="2024-01-30", max_concurrency=1, retries=0)
    assert failure.value.failed == (POISON,)
    assert "poison row" in failure.value.errors[POISON]
    current = Ledger(lake.ledger).current(bad.name)
    assert [k for k, s in current.items() if s.status is Status.FAILED] == [POISON]
    done = [s for s in current.values() if s.status is Status.COMPLETE and s.version == "2"]
    assert len(done) == 29
    after = rows(spark, lake.target)
    assert [r for r in after if str(r[1]) == POISON] == old_poison  # untouched: version 1's rows
    assert len(after) == len(before) == 150


def test_complete_partitions_split_the_chunks_and_are_never_rewritten(lake: Lake, spark: Any) -> None:
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, partitions=["2024-01-03", "2024-01-06"])
    kept = {
        f for f in DeltaTable(lake.target).file_uris() if "order_date=2024-01-03" in f or "order_date=2024-01-06" in f
    }
    summary = backfill(pipeline=p.name, start="2024-01-01", end="2024-01-08", max_concurrency=1).to_dict()
    assert sorted(summary["completed"]) == [f"2024-01-0{d}" for d in (1, 2, 4, 5, 7, 8)]
    commits = write_commits(lake.target)  # newest first
    assert len(commits) == 2 + 3  # the two lone days, then three chunks around them
    predicates = [str(c["operationParameters"]["predicate"]) for c in commits[:3]]
    joined = " ".join(predicates)
    assert "2024-01-03" not in joined and "2024-01-06" not in joined
    assert kept <= set(DeltaTable(lake.target).file_uris())  # the same files: not rewritten


@pytest.mark.parametrize(
    ("transform", "after_s"), [(slow, 2.0), (slow_to_plan, 0.0)], ids=["its-job-running", "still-planning"]
)
def test_the_windows_hard_stop_cancels_a_running_chunk_and_leaves_it_pending(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch, transform: Any, after_s: float
) -> None:
    """The hard stop comes while the chunk's Spark job runs, or while the chunk is still being planned
    (no job yet: one cancel then finds nothing to cancel, and a watchdog that cancelled once let the
    chunk run to its commit; it happened on a busy machine)."""
    p = lake.make(transform)
    monkeypatch.setenv("BACKFILL_WINDOW_GRACE", "0")
    deadline = datetime.now(UTC) + timedelta(hours=1)
    STARTED.clear()
    started_at: list[float] = []

    def clock() -> datetime:
        if len(STARTED) >= 2:  # the chunk's transform was built (the first call creates the target)
            if not started_at:
                started_at.append(time.monotonic())
            if time.monotonic() - started_at[0] >= after_s:  # ... and `after_s` later: past the stop
                return deadline + timedelta(seconds=1)
        return datetime.now(UTC)

    monkeypatch.setattr(window, "clock", clock)
    began = time.monotonic()
    state = backfill(
        pipeline=p.name,
        start="2024-01-01",
        end="2024-01-02",
        max_concurrency=1,
        window_end=deadline.isoformat(),
        return_state=True,
    )
    assert time.monotonic() - began < 60  # cancelled, not left to crawl through 80 rows × 0.1 s × 2 jobs
    assert state.is_completed() and state.name == "WindowClosed"
    summary = state.result().to_dict()
    assert sorted(summary["not_started"]) == ["2024-01-01", "2024-01-02"] and summary["completed"] == []
    current = Ledger(lake.ledger).current(p.name)
    assert {s.status for s in current.values()} == {Status.PENDING}
    assert write_commits(lake.target) == []  # nothing of the chunk was committed


def test_a_commit_that_landed_is_complete_even_if_the_driver_dies_right_after(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write call and every clean-up after it raise as when the JVM dies just after the commit: the
    commit's own evidence (our tag in the Delta log) decides, so the partitions are COMPLETE with that
    version, not FAILED with "the Spark driver is gone" over rows that are in the table."""
    from py4j.protocol import Py4JNetworkError
    from pyspark.sql.readwriter import DataFrameWriter

    p = lake.make(to_silver_orders)
    real_save = DataFrameWriter.save

    def save_then_die(self: DataFrameWriter, *args: Any, **kwargs: Any) -> None:
        created = Path(lake.target, "_delta_log").exists()  # not the empty table's creation
        real_save(self, *args, **kwargs)
        if created:
            raise Py4JNetworkError("Answer from Java side is empty")

    def gone(*args: Any, **kwargs: Any) -> None:
        raise Py4JNetworkError("Error while sending or receiving")

    monkeypatch.setattr(DataFrameWriter, "save", save_then_die)
    monkeypatch.setattr(DataFrame, "unpersist", gone)
    summary = backfill(pipeline=p.name, start="2024-01-01", end="2024-01-03", max_concurrency=1, retries=0).to_dict()
    assert sorted(summary["completed"]) == ["2024-01-01", "2024-01-02", "2024-01-03"], summary
    assert summary["failed"] == []
    current = Ledger(lake.ledger).current(p.name)
    commits = write_commits(lake.target)
    assert {s.status for s in current.values()} == {Status.COMPLETE}
    assert {s.table_version for s in current.values()} == {c["version"] for c in commits}  # the commit's version
    assert len(rows(spark, lake.target)) == 3 * 40
