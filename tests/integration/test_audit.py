"""`backfill audit` on real Spark + Delta: a compaction (OPTIMIZE) of what our runs wrote is no drift;
another writer's changes are (it deletes a day, empties one, rewrites one with the same rows, deletes
some rows through deletion vectors): the audit names each with its kind, the plan says why it is due, a
plain `backfill run` repairs exactly those (never from a cache record), and the audit is clean again. A
ledger from an older release (no target digests) reports no false drift; a lost ledger does not serve
cache records over drifted data."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.cli import run_cli
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Grain
from prefect_backfill.planning import Status
from prefect_backfill.preparing import prepare
from prefect_backfill.request import BackfillRequest
from prefect_backfill.tables import read_snapshot
from tests.integration.conftest import LAKES, ROWS_PER_DAY, Lake

pytestmark = pytest.mark.spark

FIRST, LAST = "2024-01-01", "2024-01-05"


def rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    df = spark.read.format("delta").load(path)
    return sorted(tuple(r) for r in df.select("order_id", "order_date", "amount", "amount_usd").collect())


def expected(spark: Any, bronze: str, last: str = LAST) -> list[tuple[Any, ...]]:
    out = to_silver_orders(spark.read.format("delta").load(bronze)).where(
        F.col("order_date").between(F.lit(FIRST).cast("date"), F.lit(last).cast("date"))
    )
    return sorted(tuple(r) for r in out.select("order_id", "order_date", "amount", "amount_usd").collect())


def audit_json(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run_cli(["audit", name, "--json"])
    return code, json.loads(capsys.readouterr().out)


def due(name: str, last: str = LAST) -> dict[str, str]:
    return dict(prepare(BackfillRequest.build(pipeline=name, start=FIRST, end=last)).plan.why)


def on_day(day: str) -> str:
    return f"order_date = DATE '{day}'"


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_drift_by_another_writer_is_reported_then_repaired_by_a_plain_run(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    p = lake.make(to_silver_orders)
    spark.conf.set("spark.sql.files.maxRecordsPerFile", str(ROWS_PER_DAY // 4))  # several files a day
    try:
        backfill(pipeline=p.name, start=FIRST, end=LAST, retries=0)
    finally:
        spark.conf.unset("spark.sql.files.maxRecordsPerFile")
    states = Ledger(lake.ledger).current(p.name)
    written = {k: s.target_digest for k, s in states.items()}
    now = read_snapshot(lake.target, "order_date", Grain.DAY)
    assert written == {k: now.digest(k) for k in written} and all(written.values())  # recorded at commit
    source = read_snapshot(lake.bronze, "order_date", Grain.DAY)  # what each result was computed from
    recorded = {k: (s.source_digest, s.source_version) for k, s in states.items()}
    assert recorded == {k: (source.digest(k), source.version) for k in states}
    code, report = audit_json(p.name, capsys)
    assert (code, report["clean"], report["checked"]) == (0, True, 5)

    # A compaction (Spark's OPTIMIZE) gives every day other files and the same rows: no drift, nothing due.
    t = f"delta.`{lake.target}`"
    spark.sql(f"OPTIMIZE {t}")
    compacted = read_snapshot(lake.target, "order_date", Grain.DAY)
    assert all(compacted.digest(k) != digest for k, digest in written.items())
    code, report = audit_json(p.name, capsys)
    assert (code, report["clean"], report["findings"]) == (0, True, [])
    assert due(p.name) == {}

    # Another writer: deletes 01, rewrites 02 with the same rows, empties 03, deletes some rows of 04
    # through deletion vectors (same files, same stats: only the deletion vector tells). 05 untouched.
    spark.sql(f"DELETE FROM {t} WHERE {on_day('2024-01-01')}")
    spark.sql(f"UPDATE {t} SET amount = amount WHERE {on_day('2024-01-02')}")
    schema = spark.read.format("delta").load(lake.target).schema
    (
        spark.createDataFrame([], schema)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", on_day("2024-01-03"))
        .save(lake.target)
    )
    spark.sql(f"ALTER TABLE {t} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.sql(f"DELETE FROM {t} WHERE {on_day('2024-01-04')} AND order_id % 4 = 0")
    left = spark.read.format("delta").load(lake.target).where(on_day("2024-01-04")).count()
    assert 0 < left < ROWS_PER_DAY

    code, report = audit_json(p.name, capsys)
    assert code == 1 and report["checked"] == 5 and report["unverified"] == []
    found = {f["partition"]: (f["kind"], f["expected"]["rows"], f["found"]["rows"]) for f in report["findings"]}
    assert found == {
        "2024-01-01": ("missing", ROWS_PER_DAY, 0),
        "2024-01-02": ("rewritten", ROWS_PER_DAY, ROWS_PER_DAY),
        "2024-01-03": ("missing", ROWS_PER_DAY, 0),
        "2024-01-04": ("rows", ROWS_PER_DAY, left),
    }
    assert report["repair_command"] == f"backfill run {p.name} --partitions 2024-01-01,2024-01-02,2024-01-03,2024-01-04"
    assert due(p.name) == {
        "2024-01-01": "partition missing from the target",
        "2024-01-02": f"partition rewritten by another writer (the same {ROWS_PER_DAY} rows, not the files it wrote)",
        "2024-01-03": "partition missing from the target",
        "2024-01-04": f"row count in the target differs from the ledger ({left} rows, the ledger says {ROWS_PER_DAY})",
    }

    summary = backfill(pipeline=p.name, start=FIRST, end=LAST, retries=0).to_dict()
    assert sorted(summary["completed"]) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert summary["cached"] == [] and summary["skipped"] == 1  # computed again, never served from a record
    assert rows(spark, lake.target) == expected(spark, lake.bronze)
    current = Ledger(lake.ledger).current(p.name)
    assert {k: s.status for k, s in current.items()} == dict.fromkeys(current, Status.COMPLETE)
    assert current["2024-01-05"].run_id != current["2024-01-04"].run_id  # 05 was left alone (compacted since)
    now = read_snapshot(lake.target, "order_date", Grain.DAY)
    repaired = {k: s.target_digest for k, s in current.items() if k != "2024-01-05"}
    assert repaired == {k: now.digest(k) for k in repaired}
    code, report = audit_json(p.name, capsys)
    assert (code, report["clean"], report["findings"]) == (0, True, [])
    assert due(p.name) == {}


def test_a_ledger_of_an_older_release_reports_no_false_drift(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    p = lake.make(to_silver_orders)
    last = "2024-01-03"
    backfill(pipeline=p.name, start=FIRST, end=last, retries=0)
    # The same ledger as an older release wrote it: no target_digest column at all. (Ledger.events reads
    # through SCHEMA, so the column reads as null: drop it before writing the old layout.)
    events = Ledger(lake.ledger).events(p.name).drop_columns(["target_digest"])
    shutil.rmtree(lake.ledger)
    write_deltalake(lake.ledger, events)
    assert "target_digest" not in [f.name for f in DeltaTable(lake.ledger).schema().fields]
    code, report = audit_json(p.name, capsys)
    assert (code, report["findings"], report["unverified"]) == (0, [], ["2024-01-01", "2024-01-02", "2024-01-03"])
    assert due(p.name, last) == {}

    # Rewrites with the same rows cannot be told without a digest; other row counts still can.
    spark.sql(f"UPDATE delta.`{lake.target}` SET amount = amount WHERE {on_day('2024-01-02')}")
    spark.sql(f"DELETE FROM delta.`{lake.target}` WHERE {on_day('2024-01-03')} AND order_id % 2 = 0")
    code, report = audit_json(p.name, capsys)
    assert code == 1 and [(f["partition"], f["kind"]) for f in report["findings"]] == [("2024-01-03", "rows")]
    summary = backfill(pipeline=p.name, start=FIRST, end=last, retries=0).to_dict()
    assert summary["completed"] == ["2024-01-03"] and summary["cached"] == []
    assert rows(spark, lake.target) == expected(spark, lake.bronze, last)
    code, report = audit_json(p.name, capsys)  # the old ledger gained the column with the repair
    assert (code, report["unverified"]) == (0, ["2024-01-01", "2024-01-02"])


def test_a_lost_ledger_does_not_serve_cache_records_over_drifted_data(lake: Lake, spark: Any) -> None:
    p = lake.make(to_silver_orders)
    last = "2024-01-02"
    backfill(pipeline=p.name, start=FIRST, end=last, retries=0)
    spark.sql(f"UPDATE delta.`{lake.target}` SET amount = amount + 1 WHERE {on_day('2024-01-02')}")
    shutil.rmtree(lake.ledger)
    summary = backfill(pipeline=p.name, start=FIRST, end=last, retries=0).to_dict()
    assert summary["cached"] == ["2024-01-01"] and summary["completed"] == ["2024-01-02"]
    assert rows(spark, lake.target) == expected(spark, lake.bronze, last)
    assert due(p.name, last) == {}
