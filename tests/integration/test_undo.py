"""`backfill undo` on real Spark + Delta + Prefect: a wrong version overwrites 10 days, the table is
compacted since, and the undo gives back the exact rows before it; a partition another writer changed
later is refused (and restored with --force); a vacuumed version is refused; the first run's undo removes
what it created; an unknown run writes nothing; after an undo the next run reprocesses the undone
partitions instead of serving them from the cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from flows.undo import undo
from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.cli import run_cli
from prefect_backfill.demo import generate_orders, to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from prefect_backfill.results import PartitionResult
from prefect_backfill.settings import get_settings
from prefect_backfill.storage import delta_options
from tests.integration.conftest import LAKES, Lake

pytestmark = pytest.mark.spark

TEN = ("2024-03-01", "2024-03-10")
DAYS = [f"2024-03-{d:02d}" for d in range(1, 11)]


@pytest.fixture(scope="module")
def bronze10(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("bronze10") / "orders")
    generate_orders(path, TEN[0], TEN[1], rows_per_day=6)
    return path


def wrong_factor(orders: DataFrame) -> DataFrame:
    """The "wrong" version: amounts in USD at 10x."""
    return to_silver_orders(orders).withColumn("amount_usd", F.round(F.col("amount") * 11, 2))


def rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    df = spark.read.format("delta").load(path)
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())  # every column, every row


def version(path: str) -> int:
    return DeltaTable(path, storage_options=delta_options(path)).version()


def events(lake: Lake, name: str, status: Status | None = None) -> list[dict[str, Any]]:
    out = Ledger(lake.ledger).events(name).to_pylist()
    return [e for e in out if status is None or e["status"] == status.value]


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_undo_of_a_wrong_version_restores_the_rows_exactly_refuses_what_changed_later_and_the_next_run_reprocesses(
    lake: Lake, spark: Any, bronze10: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = lake.make(to_silver_orders, version="1", source=bronze10)
    backfill(pipeline=good.name, start=TEN[0], end=TEN[1], retries=0)
    before = rows(spark, lake.target)
    assert len(before) == 60

    wrong = lake.make(wrong_factor, version="2", source=bronze10)
    spark.conf.set("spark.sql.files.maxRecordsPerFile", "2")  # three files a day, for the compaction below
    try:
        summary = backfill(pipeline=wrong.name, start=TEN[0], end=TEN[1], retries=0, chunk_partitions=4).to_dict()
    finally:
        spark.conf.unset("spark.sql.files.maxRecordsPerFile")
    run_id = summary["run_id"]
    assert sorted(summary["completed"]) == DAYS and rows(spark, lake.target) != before
    # Another writer changes one day after the wrong run; then the table is compacted (other files for
    # every day, the same rows): only the changed day is refused.
    spark.sql(f"UPDATE delta.`{lake.target}` SET customer_id = -1 WHERE order_date = DATE '2024-03-05'")
    touched_by = version(lake.target)
    spark.sql(f"OPTIMIZE delta.`{lake.target}`")
    assert version(lake.target) == touched_by + 1
    capsys.readouterr()

    assert run_cli(["undo", wrong.name, "--run", run_id[:8], "--yes"]) == 1  # something was refused
    out, err = capsys.readouterr()
    assert f"undo of run {run_id} of {wrong.name}: 9 to restore, 1 refused" in out
    assert f"by version {touched_by} (UPDATE)" in out and "--force restores it anyway" in out
    assert "restored 9 partition(s)" in out
    assert err.count("\n") == 1 and "refused 1 (2024-03-05: changed after the run's commit" in err
    undo_version = version(lake.target)
    assert undo_version == touched_by + 2  # one commit for the 9 partitions of 3 chunks
    expected_now = [r for r in before if str(r[3]) != "2024-03-05"]
    assert [r for r in rows(spark, lake.target) if str(r[3]) != "2024-03-05"] == expected_now
    assert {r[2] for r in rows(spark, lake.target) if str(r[3]) == "2024-03-05"} == {-1}  # left as it was

    undone = events(lake, wrong.name, Status.UNDONE)
    assert sorted(e["partition"] for e in undone) == [d for d in DAYS if d != "2024-03-05"]
    assert {(e["undone_run"], e["table_version"], e["replaced_version"], e["rows_out"]) for e in undone} == {
        (run_id, undo_version, undo_version - 1, 6)
    }
    # The undone partitions' cache records are void: they would resurrect the wrong rows.
    cache = PartitionCache.from_settings(get_settings())
    complete = {e["partition"]: e for e in events(lake, wrong.name, Status.COMPLETE) if e["run_id"] == run_id}

    def key(day: str) -> str:
        e = complete[day]
        return cache_key(wrong.name, day, e["fingerprint"], e["target_id"], e["source_digest"])

    assert cache.get(key("2024-03-01")) is None and cache.get(key("2024-03-05")) is not None

    # Undone already: refused, and nothing written.
    assert run_cli(["undo", wrong.name, "--run", run_id, "--partitions", "2024-03-01", "--yes"]) == 1
    assert "already undone (undo commit version" in capsys.readouterr().out
    assert version(lake.target) == undo_version

    # --force restores the day changed later; now every row is exactly as before the wrong run.
    assert run_cli(["undo", wrong.name, "--run", run_id, "--partitions", "2024-03-05", "--force", "--yes"]) == 0
    assert "forced: changed after the run's commit" in capsys.readouterr().out
    assert rows(spark, lake.target) == before

    assert run_cli(["status", wrong.name, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["UNDONE"] == 10 and {u["undone_run"] for u in status["undone"]} == {run_id}
    assert run_cli(["status", wrong.name]) == 0
    text = capsys.readouterr().out
    assert "⏪ undone: 10" in text and "UNDONE (restored to their content before run" in text

    # Even a cache record that survived (storage where the tombstone could not be written) is not served.
    survivor = complete["2024-03-02"]
    cache.put(
        PartitionResult(
            wrong.name, "2024-03-02", survivor["fingerprint"], 6, 6, survivor["table_version"], 0.1, 0.0, run_id,
            survivor["source_digest"], survivor["target_id"],
        )
    )  # fmt: skip
    again = backfill(pipeline=wrong.name, start=TEN[0], end=TEN[1], retries=0).to_dict()
    assert sorted(again["completed"]) == DAYS and again["cached"] == []
    latest = Ledger(lake.ledger).current(wrong.name)
    assert {(s.status, s.run_id, s.cached) for s in latest.values()} == {(Status.COMPLETE, again["run_id"], False)}
    assert rows(spark, lake.target) != before  # the wrong version really ran again


def test_a_vacuumed_version_is_refused_and_the_flow_ends_failed(lake: Lake, spark: Any) -> None:
    good = lake.make(to_silver_orders, version="1")
    backfill(pipeline=good.name, start="2024-01-01", end="2024-01-02", retries=0)
    wrong = lake.make(wrong_factor, version="2")
    run_id = backfill(pipeline=wrong.name, start="2024-01-01", end="2024-01-02", retries=0).to_dict()["run_id"]
    # VACUUM with retention 0 and the retention check off (delta-rs's: the same file deletions as Spark's
    # VACUUM, in milliseconds instead of ~40 s of Spark jobs on this machine).
    deleted = DeltaTable(lake.target).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert len(deleted) == 2  # the two files the wrong run replaced
    at = version(lake.target)
    after_wrong = rows(spark, lake.target)

    state = undo(pipeline=wrong.name, run_id=run_id, return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert "refused 2 (2024-01-01: the files of version" in message and "were vacuumed (1 of 1 gone" in message
    assert version(lake.target) == at and rows(spark, lake.target) == after_wrong  # nothing written
    assert events(lake, wrong.name, Status.UNDONE) == []


def test_the_first_runs_undo_removes_what_it_created_and_bad_requests_write_nothing(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    p = lake.make(to_silver_orders)
    assert run_cli(["undo", p.name, "--run", "whatever-run", "--yes"]) == 2  # no ledger yet
    assert "has no ledger at" in capsys.readouterr().err
    run_id = backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02", retries=0).to_dict()["run_id"]
    at, recorded = version(lake.target), len(events(lake, p.name))

    for argv, says in [
        (["--run", "deadbeef-0000-0000", "--yes"], f"run 'deadbeef-0000-0000' is not in the ledger of {p.name}"),
        (["--run", run_id[:5], "--yes"], "at least 8 of its first characters"),
        (["--run", run_id, "--start", "2024-02-01", "--end", "2024-02-02", "--yes"], "has no partitions between"),
        (["--run", run_id], "no terminal to confirm the undo in: pass --yes"),
    ]:
        assert run_cli(["undo", p.name, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, (argv, err)
    assert version(lake.target) == at and len(events(lake, p.name)) == recorded  # nothing written

    # The target was created empty by that run (version 0): its undo removes both partitions.
    state = undo(pipeline=p.name, run_id=run_id[:8], return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["restored"] == ["2024-01-01", "2024-01-02"]
    assert rows(spark, lake.target) == []
    assert {(e["partition"], e["rows_out"]) for e in events(lake, p.name, Status.UNDONE)} == {
        ("2024-01-01", 0),
        ("2024-01-02", 0),
    }
