"""Downstream cascade on real tables: silver (daily) → gold (monthly revenue, a day → month roll-up).

A silver run over some days marks exactly the gold months that read them STALE in gold's ledger (with the
silver run and days as the reason), before those days are COMPLETE; ``plan`` previews it, ``status`` shows
it; gold's next default run rebuilds exactly those months, equal to gold built from scratch over the new
silver; ``--cascade none`` leaves gold alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.cascade import RollUp, Upstream
from prefect_backfill.cli import main
from prefect_backfill.demo import generate_orders, to_gold_revenue, to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import Status
from prefect_backfill.registry import register
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark

FIRST, LAST = "2024-01-29", "2024-03-02"  # the ends of three months


def silver_v2(orders: DataFrame) -> DataFrame:
    return to_silver_orders(orders).withColumn("amount_usd", F.round(F.col("amount") * F.lit(1.2), 2))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["backfill", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def gold_rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(r)
        for r in spark.read.format("delta")
        .load(path)
        .select("order_date", "country", "revenue_usd", "orders")
        .collect()
    )


def test_a_silver_run_marks_the_gold_months_that_read_it_and_gold_rebuilds_exactly_them(
    lake: Lake, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bronze = str(tmp_path / "bronze_months")
    generate_orders(bronze, FIRST, LAST, rows_per_day=4)
    silver = lake.make(to_silver_orders, version="1", name="cascade_silver", source=TableRef(bronze))
    gold_target = str(tmp_path / "gold" / "revenue")
    gold = register(
        Pipeline(
            name="cascade_gold",
            source=TableRef(lake.target),
            target=TableRef(gold_target),
            partition_column="order_date",
            transform=to_gold_revenue,
            version="1",
            grain=Grain.MONTH,
            upstream=(Upstream(silver.name, RollUp()),),
        ),
        replace=True,
    )
    gold_ledger = Ledger(str(tmp_path / "gold" / "_backfill_progress"))
    backfill(pipeline=silver.name, start=FIRST, end=LAST, retries=0)
    assert gold_ledger.current(gold.name) == {}  # nothing of gold existed: nothing to mark
    summary = backfill(pipeline=gold.name, start="2024-01", end="2024-03", retries=0).to_dict()
    assert sorted(summary["completed"]) == ["2024-01", "2024-02", "2024-03"]
    assert gold_rows(spark, gold_target) == sorted(
        tuple(r) for r in to_gold_revenue(spark.read.format("delta").load(lake.target)).collect()
    )

    fixed = lake.make(silver_v2, version="2", name="cascade_silver", source=TableRef(bronze))
    days = ["2024-02-10", "2024-03-01"]
    code, out, _ = cli(monkeypatch, capsys, "plan", fixed.name, "--partitions", ",".join(days), "--json")
    assert code == 0
    (step,) = json.loads(out)["cascade"]
    assert step == {"pipeline": gold.name, "policy": "mark", "mapping": "roll-up", "partitions": ["2024-02", "2024-03"]}
    assert gold_ledger.current(gold.name)["2024-02"].status is Status.COMPLETE  # a plan writes nothing

    backfill(pipeline=fixed.name, partitions=days, retries=0)
    states = gold_ledger.current(gold.name)
    assert {k: s.status for k, s in states.items()} == {
        "2024-01": Status.COMPLETE,
        "2024-02": Status.STALE,
        "2024-03": Status.STALE,
    }
    silver_run = Ledger(lake.ledger).current(fixed.name)["2024-02-10"].run_id
    assert states["2024-02"].run_id == silver_run
    assert json.loads(states["2024-02"].upstream or "") == {"pipeline": fixed.name, "partitions": ["2024-02-10"]}
    code, out, _ = cli(monkeypatch, capsys, "status", gold.name, "--json")
    stale = json.loads(out)["upstream_stale"]
    assert [s["partition"] for s in stale] == ["2024-02", "2024-03"]
    assert stale[0]["because"] == f"{fixed.name} 2024-02-10 (run {silver_run[:8]})"

    summary = backfill(pipeline=gold.name, start="2024-01", end="2024-03", retries=0).to_dict()
    assert sorted(summary["completed"]) == ["2024-02", "2024-03"]  # exactly the marked months
    assert gold_rows(spark, gold_target) == sorted(
        tuple(r) for r in to_gold_revenue(spark.read.format("delta").load(lake.target)).collect()
    )

    backfill(pipeline=fixed.name, partitions=["2024-01-30"], retries=0, reprocess="all", cascade="none")
    assert gold_ledger.current(gold.name)["2024-01"].status is Status.COMPLETE  # --cascade none: left alone

    # An undo of silver changes what gold read as much as a run does: the month is stale again.
    code, out, err = cli(
        monkeypatch, capsys, "undo", fixed.name, "--run", silver_run, "--partitions", "2024-02-10", "--yes"
    )
    assert code == 0, (out, err)
    states = gold_ledger.current(gold.name)
    assert states["2024-02"].status is Status.STALE and states["2024-03"].status is Status.COMPLETE
    assert states["2024-02"].run_id == Ledger(lake.ledger).current(fixed.name)["2024-02-10"].run_id  # the undo's id
