"""Bad input: one clear line, exit 2 (usage), and nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from flows.backfill import backfill
from prefect_backfill.cli import main
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import SourceNotFoundError, TargetLayoutError
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["backfill", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def nothing_written(lake: Lake) -> bool:
    return not Path(lake.target).exists() and not Path(lake.ledger).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2024-01-01", "--end", "2024-01-03", "--name", "typo"], "unknown pipeline 'typo'"),
        (["--start", "2024-02-30", "--end", "2024-03-01"], "start '2024-02-30' is not a valid date"),
        (["--start", "2024-03-01", "--end", "2024-02-01"], "end 2024-02-01 is before start 2024-03-01"),
        (["--start", "2020-01-01", "--end", "2024-01-01"], "1462 partitions is more than the safety cap of 400"),
        (["--start", "2024-01-01", "--end", "2024-01-02", "--reprocess", "some"], "not one of missing, failed, all"),
        (["--start", "2024-01-01", "--end", "2024-01-02", "--exclude", "2023-01-01"], "are not in the range"),
        (["--start", "2024-01-01", "--end", "2024-01-02T05"], "end '2024-01-02T05' is an hour, but this pipeline's"),
        (["--partitions", "20240101"], "partition '20240101' is not a valid date: write it like 2024-01-01"),
        (["--start", "2024-01-01", "--end", "2024-01-02", "--window-end", "2024-01-01T06:00"], "has already passed"),
    ],
)
def test_cli_refuses_bad_requests_with_one_line(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    p = lake.make(to_silver_orders)
    name = p.name
    if "--name" in args:
        i = args.index("--name")
        name = args[i + 1]
        args = args[:i] + args[i + 2 :]
    code, out = cli(monkeypatch, capsys, "run", name, *args)
    assert code == 2
    assert out.startswith("error: ") and message in out
    assert out.strip().count("\n") == 0, out  # one line
    assert nothing_written(lake)


def test_missing_source_table(lake: Lake) -> None:
    p = lake.make(to_silver_orders, source=str(lake.root / "bronze" / "nope"))
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02")
    assert nothing_written(lake)


def test_target_partitioned_by_another_column(lake: Lake, spark: Any) -> None:
    rows = spark.read.format("delta").load(lake.bronze).limit(5)
    rows.write.format("delta").partitionBy("customer_id").save(lake.target)
    version = DeltaTable(lake.target).version()
    p = lake.make(to_silver_orders)
    with pytest.raises(TargetLayoutError, match="is partitioned by customer_id, not by order_date: "):
        backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02")
    assert DeltaTable(lake.target).version() == version
    assert not Path(lake.ledger).exists()


def test_unpartitioned_target_without_the_partition_column(lake: Lake, spark: Any) -> None:
    spark.read.format("delta").load(lake.bronze).limit(5).drop("order_date").write.format("delta").save(lake.target)
    version = DeltaTable(lake.target).version()
    p = lake.make(to_silver_orders)
    with pytest.raises(TargetLayoutError, match="is partitioned by nothing and has no column order_date"):
        backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02")
    assert DeltaTable(lake.target).version() == version
    assert not Path(lake.ledger).exists()


def test_a_target_left_half_created_by_a_stop_is_created_by_the_next_run(lake: Lake) -> None:
    """A stop while the empty target is being created can leave ``_delta_log/`` with no commit in it
    (seen when Ctrl-C lands during the CLI's pre-flight): Delta reads that as no table, and so must we."""
    (Path(lake.target) / "_delta_log").mkdir(parents=True)
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02")
    dates = {str(r["order_date"]) for r in DeltaTable(lake.target).to_pyarrow_table().to_pylist()}
    assert dates == {"2024-01-01", "2024-01-02"}


def test_plan_and_status_on_the_cli(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, start="2024-01-01", end="2024-01-02")
    code, out = cli(monkeypatch, capsys, "plan", p.name, "--start", "2024-01-01", "--end", "2024-01-03", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["to_run"] == ["2024-01-03"]
    assert [s["partition"] for s in plan["skipped"]] == ["2024-01-01", "2024-01-02"]
    assert plan["skipped"][0]["reason"].startswith("complete at version 1")

    code, out = cli(monkeypatch, capsys, "status", p.name, "--json")
    assert code == 0
    status = json.loads(out)
    assert status["counts"]["COMPLETE"] == 2 and status["counts"]["FAILED"] == 0 and status["stale"] == []

    lake.make(to_silver_orders, version="2")
    code, out = cli(monkeypatch, capsys, "status", p.name, "--json")
    assert json.loads(out)["stale"] == ["2024-01-01", "2024-01-02"]


def _refuse_to_start(**params: Any) -> Any:
    raise AssertionError("the flow started: the definition error should have stopped the CLI before it")


def test_a_definition_error_is_one_line_before_any_flow_run(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The transform raising on an empty input, a check Spark cannot parse: found by the warm-up (Spark
    and the pipeline's declarations, while Prefect's server starts), one line, before a flow run exists."""
    import flows.backfill
    from prefect_backfill.checks import Expect

    def raises(df: Any) -> Any:
        raise ValueError("this transform is broken")

    broken = lake.make(raises, name="broken_transform")
    bad_check = lake.make(to_silver_orders, name="bad_check", checks=(Expect("amount_usd >= "),))
    monkeypatch.setattr(flows.backfill, "backfill", _refuse_to_start)
    for pipeline, code, words in [
        (broken, 1, "the transform of broken_transform failed while the target"),
        (bad_check, 2, "bad_check"),
    ]:
        got, out = cli(monkeypatch, capsys, "run", pipeline.name, "--start", "2024-01-01", "--end", "2024-01-02")
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert got == code and len(errors) == 1 and words in errors[0], out
        assert "Traceback" not in out
    assert not Path(lake.ledger).exists()  # no claim recorded, nothing written
