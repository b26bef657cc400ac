"""Targets not partitioned by the partition column, on real Spark + Delta: one liquid-clustered (created by
the pipeline's ``cluster_by``) and one plain unpartitioned table, each backfilled with two chunks in flight
(Delta's conflict check cannot tell their dates apart: without one commit at a time they conflict), equal row
for row to the same backfill on a partitioned target; a rerun has nothing to do; after an ``OPTIMIZE`` (which
mixes the days in its files) one day reprocessed alone leaves every other day as it was. A writer outside the
package committing meanwhile costs commits again, never the compute."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.cli import run_cli
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.ledger_record import Status
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.registry import register
from tests.integration.conftest import BRONZE_END, BRONZE_START, LAKES, Lake

pytestmark = pytest.mark.spark

DAYS = 8


def rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())


def per_day(spark: Any, path: str) -> dict[str, int]:
    counted = spark.read.format("delta").load(path).groupBy("order_date").agg(F.count(F.lit(1)).alias("n"))
    return {str(r["order_date"]): int(r["n"]) for r in counted.collect()}


def detail(spark: Any, path: str) -> Any:
    return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]


@pytest.fixture(scope="module")
def expected(bronze: str, spark: Any, prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The rows of the same backfill on a target partitioned by the day (run once for the module)."""
    root = tmp_path_factory.mktemp("partitioned")
    path = str(root / "silver")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BACKFILL_RESULT_STORAGE_PATH", str(root / "results"))
        p = Pipeline("partitioned_reference", TableRef(bronze), TableRef(path), "order_date", to_silver_orders, "1")
        register(p, replace=True)
        backfill(pipeline=p.name, start=BRONZE_START, end=BRONZE_END, retries=0, chunk_partitions=2)
    assert detail(spark, path)["partitionColumns"] == ["order_date"]
    return rows(spark, path)


@pytest.mark.parametrize("layout", ["clustered", "unpartitioned"])
def test_a_clustered_or_unpartitioned_target_gets_the_rows_of_a_partitioned_one(
    lake: Lake, spark: Any, layout: str, expected: list[Any]
) -> None:
    transform = to_silver_orders
    if layout == "unpartitioned":  # an existing plain table, no partitioning, no clustering
        empty = to_silver_orders(spark.read.format("delta").load(lake.bronze).limit(0))
        empty.write.format("delta").save(lake.target)
        p = lake.make(transform)
    else:  # created by the package
        p = lake.make(transform, cluster_by=("order_date",))

    summary = backfill(
        pipeline=p.name, start=BRONZE_START, end=BRONZE_END, retries=0, max_concurrency=2, chunk_partitions=2
    ).to_dict()
    assert len(summary["completed"]) == DAYS and not summary["failed"], summary
    info = detail(spark, lake.target)
    assert info["partitionColumns"] == []
    assert info["clusteringColumns"] == (["order_date"] if layout == "clustered" else [])
    assert rows(spark, lake.target) == expected

    # Every partition COMPLETE at its chunk's own commit, and no attempt failed (retries=0: a conflict
    # between the two chunks in flight would have failed one).
    ledger = Ledger(lake.ledger)
    states = ledger.current(p.name)
    assert {s.status for s in states.values()} == {Status.COMPLETE} and len(states) == DAYS
    versions = {s.table_version for s in states.values()}
    assert len(versions) == DAYS // 2 and None not in versions
    statuses = {str(r["status"]) for r in ledger.events(p.name).to_pylist()}
    assert Status.FAILED.value not in statuses
    history = spark.sql(f"DESCRIBE HISTORY delta.`{lake.target}`")
    assert history.where("userMetadata IS NOT NULL").count() == DAYS // 2  # one commit per chunk

    # Resumable: a rerun has nothing to do.
    again = backfill(pipeline=p.name, start=BRONZE_START, end=BRONZE_END, retries=0).to_dict()
    assert not again["completed"] and again["skipped"] == DAYS, again

    # A compaction mixes the days in its files; one day reprocessed alone replaces that day's rows only.
    spark.sql(f"OPTIMIZE delta.`{lake.target}`").collect()
    assert detail(spark, lake.target)["numFiles"] < DAYS
    day = "2024-01-05"
    redo = backfill(pipeline=p.name, partitions=[day], reprocess="all", retries=0).to_dict()
    assert redo["completed"] == [day], redo
    assert rows(spark, lake.target) == expected


def test_another_writer_committing_meanwhile_costs_commits_not_compute(
    lake: Lake, spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A daily job outside the package appends to the same clustered table while the backfill runs: each
    conflict is committed again from the chunk's cached output, the transform runs once per chunk. (How
    many conflicts there are depends on the race: 18 in one run of an append every half second; the rule
    itself, a conflict retried and nothing else, is tests/unit/test_committer.py.)"""
    calls: list[int] = []

    def transform(orders: DataFrame) -> DataFrame:
        calls.append(1)
        return to_silver_orders(orders)

    p = lake.make(transform, cluster_by="order_date")
    backfill(pipeline=p.name, partitions=["2024-01-01"], retries=0)  # creates the table
    calls.clear()

    # The outside writer: rows of a day the backfill does not touch, appended 5 times, 0.7 s apart. Fewer
    # commits than a chunk's commit attempts (6): however the race goes, no chunk may fail for it.
    outside = to_silver_orders(spark.read.format("delta").load(lake.bronze)).where(F.col("order_date") == "2024-01-08")
    stop = threading.Event()
    appended: list[int] = []

    def daily_job() -> None:
        for _ in range(5):
            if stop.wait(0.7):
                return
            outside.write.format("delta").mode("append").save(lake.target)
            appended.append(1)

    writer = threading.Thread(target=daily_job, daemon=True)
    caplog.set_level(logging.INFO, logger="prefect_backfill.engine.committer")
    writer.start()
    try:
        days = [f"2024-01-0{d}" for d in range(2, 8)]
        summary = backfill(pipeline=p.name, partitions=days, retries=0, max_concurrency=2, chunk_partitions=1).to_dict()
    finally:
        stop.set()
        writer.join()
    assert sorted(summary["completed"]) == days and not summary["failed"], summary
    # One transform per chunk, plus the target's check of the output schema: a conflict computed nothing again.
    assert len(calls) == len(days) + 1
    by_day, source = per_day(spark, lake.target), per_day(spark, lake.bronze)
    assert all(by_day[d] == source[d] for d in ["2024-01-01", *days])
    assert by_day["2024-01-08"] == source["2024-01-08"] * len(appended)
    conflicts = [r for r in caplog.records if "conflicted with another writer" in r.getMessage()]
    print(f"outside appends: {len(appended)}; commits again after a conflict: {len(conflicts)}")


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_audit_and_undo_of_a_clustered_target_read_its_rows(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log of a clustered table cannot say which day a file holds: the audit and the undo compare the
    rows' digests instead. A compaction is no drift; another writer's UPDATE of one day is, and its undo is
    refused (restored with --force); the other days of a wrong version's run are restored exactly."""
    good = lake.make(to_silver_orders, version="1", cluster_by="order_date")
    backfill(pipeline=good.name, start=BRONZE_START, end=BRONZE_END, retries=0, chunk_partitions=4)
    before = rows(spark, lake.target)
    assert all(str(s.target_digest).startswith("rows:") for s in Ledger(lake.ledger).current(good.name).values())
    capsys.readouterr()
    assert run_cli(["audit", good.name]) == 0, capsys.readouterr()
    spark.sql(f"OPTIMIZE delta.`{lake.target}`").collect()  # the days now share files
    assert run_cli(["audit", good.name]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert run_cli(["status", good.name, "--json"]) == 0  # no Spark: says where drift is checked
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["COMPLETE"] == 8 and "`backfill audit" in status["drift_unknown"], status

    def wrong_factor(orders: DataFrame) -> DataFrame:
        return to_silver_orders(orders).withColumn("amount_usd", F.round(F.col("amount") * 11, 2))

    wrong = lake.make(wrong_factor, version="2", cluster_by="order_date")
    summary = backfill(pipeline=wrong.name, start="2024-01-01", end="2024-01-04", retries=0).to_dict()
    run_id = summary["run_id"]
    spark.sql(f"UPDATE delta.`{lake.target}` SET customer_id = -1 WHERE order_date = DATE '2024-01-02'")
    capsys.readouterr()
    assert run_cli(["audit", wrong.name]) == 1
    out = capsys.readouterr().out
    assert "1 drifted" in out and "│ 2024-01-02 │ rewritten │" in out and "40 rows with other" in out, out
    assert "repair with: backfill run" in out and "--partitions 2024-01-02\n" in out

    assert run_cli(["undo", wrong.name, "--run", run_id, "--yes"]) == 1  # one refused
    out, err = capsys.readouterr()
    assert "3 to restore, 1 refused" in out and "refused 1 (2024-01-02: changed after the run's commit" in err
    assert [r for r in rows(spark, lake.target) if str(r[1]) != "2024-01-02"] == [
        r for r in before if str(r[1]) != "2024-01-02"
    ]
    assert run_cli(["undo", wrong.name, "--run", run_id, "--partitions", "2024-01-02", "--force", "--yes"]) == 0
    assert rows(spark, lake.target) == before


def test_a_digest_of_rows_is_the_same_computed_on_the_output_and_read_back_from_the_table(
    spark: Any, tmp_path: Any
) -> None:
    """Whatever the columns (a map, a map inside a struct, an array, a mixed-case name), the count pass's
    digest of a partition equals the one `audit` and `undo` read back from the table."""
    from prefect_backfill.engine.content import HASH_SUM, content_aggregate, content_digest, read_content
    from prefect_backfill.partitions import Grain

    table = str(tmp_path / "t")
    spark.sql(
        f"CREATE TABLE delta.`{table}` (order_date DATE, Amount DOUBLE, n BIGINT, m MAP<STRING, INT>, "
        "s STRUCT<a: INT, mm: MAP<STRING, INT>>, xs ARRAY<INT>) USING delta CLUSTER BY (order_date)"
    )
    output = spark.sql(
        "SELECT date_add(DATE'2024-01-01', CAST(id % 3 AS INT)) AS order_date, CAST(id * 1.5 AS DOUBLE) AS Amount, "
        "id AS n, map('a', CAST(id AS INT), 'b', 2) AS m, "
        "named_struct('a', CAST(id AS INT), 'mm', map('k', 1)) AS s, array(1, CAST(id AS INT)) AS xs "
        "FROM range(30)"
    )
    written = {
        str(r["order_date"]): content_digest(int(r["rows"]), r[HASH_SUM])
        for r in output.groupBy("order_date").agg(F.count(F.lit(1)).alias("rows"), content_aggregate(output)).collect()
    }
    output.write.format("delta").mode("append").save(table)
    read = read_content(spark, table, "order_date", Grain.DAY, None, ())
    assert read.content and {k: f.digest for k, f in read.partitions.items()} == written
    assert {k: f.num_records for k, f in read.partitions.items()} == dict.fromkeys(written, 10)
