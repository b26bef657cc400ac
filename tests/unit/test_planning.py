import subprocess
import sys
from datetime import datetime

import pytest

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.planning import PartitionState, Reprocess, Status, plan

PARTS = partitions_between("2024-01-01", "2024-01-06", Grain.DAY)
V2 = "2:abc"


def state(key: str, status: Status, fingerprint: str = V2) -> PartitionState:
    return PartitionState(key, status, fingerprint, fingerprint.split(":")[0], "run-1", datetime(2024, 7, 1))


LEDGER = {
    "2024-01-01": state("2024-01-01", Status.COMPLETE),
    "2024-01-02": state("2024-01-02", Status.FAILED),
    "2024-01-03": state("2024-01-03", Status.COMPLETE, "1:old"),
    "2024-01-04": state("2024-01-04", Status.RUNNING),
    "2024-01-05": state("2024-01-05", Status.PENDING),
    # 2024-01-06 never ran
}


def keys(parts: object) -> list[str]:
    return [p.key for p in parts]  # type: ignore[attr-defined]


def test_missing_runs_everything_not_complete_for_this_version() -> None:
    p = plan("orders", V2, PARTS, LEDGER, Reprocess.MISSING)
    assert keys(p.to_run) == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06"]
    assert [(s.partition.key, s.reason.split(" (")[0]) for s in p.skipped] == [("2024-01-01", "complete at version 2")]


def test_failed_runs_only_failed_and_says_why_the_rest_is_skipped() -> None:
    p = plan("orders", V2, PARTS, LEDGER, Reprocess.FAILED)
    assert keys(p.to_run) == ["2024-01-02"]
    reasons = {s.partition.key: s.reason for s in p.skipped}
    assert reasons["2024-01-06"] == "not failed (never run)"
    assert reasons["2024-01-01"] == "not failed (complete)"


def test_all_runs_everything() -> None:
    assert keys(plan("orders", V2, PARTS, LEDGER, Reprocess.ALL).to_run) == keys(PARTS)


def test_a_new_version_makes_every_partition_stale() -> None:
    p = plan("orders", "3:def", PARTS, LEDGER, Reprocess.MISSING)
    assert keys(p.to_run) == keys(PARTS)


def test_exclusions_and_newest_first() -> None:
    p = plan("orders", V2, PARTS, {}, Reprocess.MISSING, exclude={"2024-01-03"}, newest_first=True)
    assert keys(p.to_run) == ["2024-01-06", "2024-01-05", "2024-01-04", "2024-01-02", "2024-01-01"]
    assert [(s.partition.key, s.reason) for s in p.skipped] == [("2024-01-03", "excluded by request")]


def test_excluding_a_partition_outside_the_range_is_an_error() -> None:
    with pytest.raises(InvalidRequestError, match="2023-12-31 are not in the range"):
        plan("orders", V2, PARTS, {}, exclude={"2023-12-31"})


def test_plan_prints_counts_and_reasons() -> None:
    text = str(plan("orders", V2, PARTS, LEDGER))
    assert "5 to run, 1 skipped of 6" in text
    assert "skip: 1 complete at version 2" in text


def test_unknown_reprocess_policy() -> None:
    with pytest.raises(InvalidRequestError, match="not one of missing, failed, all"):
        Reprocess.parse("everything")


def test_planning_imports_neither_spark_nor_prefect() -> None:
    code = (
        "import sys, prefect_backfill.planning, prefect_backfill.partitions;"
        "bad = [m for m in ('pyspark', 'prefect', 'delta', 'deltalake') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_partitions_held_by_a_live_run_are_left_to_it() -> None:
    from prefect_backfill.planning import without_held

    p = without_held(plan("orders", V2, PARTS, {}), {"2024-01-02": "abcdef123456", "2024-01-05": "abcdef123456"})
    assert keys(p.to_run) == ["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-06"]
    assert {(s.partition.key, s.reason) for s in p.skipped} == {
        ("2024-01-02", "held by run abcdef12 (running now)"),
        ("2024-01-05", "held by run abcdef12 (running now)"),
    }
    assert without_held(p, {}) is p


def test_default_ledger_sits_beside_the_target_for_paths_and_uris() -> None:
    from prefect_backfill.pipeline import Pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import BackfillSettings

    def keep(df):  # type: ignore[no-untyped-def]
        return df

    settings = BackfillSettings()
    local = Pipeline("l", "/lake/bronze/o", "/lake/silver/o/", "d", keep, "1")
    remote = Pipeline("r", "s3://b/bronze/o", "s3://b/silver/o", "d", keep, "1")
    assert ledger_location(local, settings) == "/lake/silver/_backfill_progress"
    assert ledger_location(remote, settings) == "s3://b/silver/_backfill_progress"
