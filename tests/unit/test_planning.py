import subprocess
import sys
from datetime import datetime

import pytest

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.planning import PartitionState, Reprocess, Status, make_plan

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
    p = make_plan("orders", V2, PARTS, LEDGER, Reprocess.MISSING)
    assert keys(p.to_run) == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06"]
    assert [(s.partition.key, s.reason.split(" (")[0]) for s in p.skipped] == [("2024-01-01", "complete at version 2")]


def test_failed_runs_only_failed_and_says_why_the_rest_is_skipped() -> None:
    p = make_plan("orders", V2, PARTS, LEDGER, Reprocess.FAILED)
    assert keys(p.to_run) == ["2024-01-02"]
    reasons = {s.partition.key: s.reason for s in p.skipped}
    assert reasons["2024-01-06"] == "not failed (never run)"
    assert reasons["2024-01-01"] == "not failed (complete)"


def test_all_runs_everything() -> None:
    assert keys(make_plan("orders", V2, PARTS, LEDGER, Reprocess.ALL).to_run) == keys(PARTS)


def test_a_new_version_makes_every_partition_stale() -> None:
    p = make_plan("orders", "3:def", PARTS, LEDGER, Reprocess.MISSING)
    assert keys(p.to_run) == keys(PARTS)


def test_exclusions_and_newest_first() -> None:
    p = make_plan("orders", V2, PARTS, {}, Reprocess.MISSING, exclude={"2024-01-03"}, newest_first=True)
    assert keys(p.to_run) == ["2024-01-06", "2024-01-05", "2024-01-04", "2024-01-02", "2024-01-01"]
    assert [(s.partition.key, s.reason) for s in p.skipped] == [("2024-01-03", "excluded by request")]


def test_excluding_a_partition_outside_the_range_is_an_error() -> None:
    with pytest.raises(InvalidRequestError, match="2023-12-31 are not in the range"):
        make_plan("orders", V2, PARTS, {}, exclude={"2023-12-31"})


def test_plan_prints_counts_and_reasons() -> None:
    text = str(make_plan("orders", V2, PARTS, LEDGER))
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
    from prefect_backfill.planning import held_keys, without_held

    who = "run abcdef12 (host h, pid 7, since 2024-07-01 03:00:00 UTC)"
    p = without_held(make_plan("orders", V2, PARTS, {}), {"2024-01-02": who, "2024-01-05": who})
    assert keys(p.to_run) == ["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-06"]
    assert {(s.partition.key, s.reason) for s in p.skipped} == {
        ("2024-01-02", f"held by another live run ({who})"),
        ("2024-01-05", f"held by another live run ({who})"),
    }
    assert held_keys(p) == ("2024-01-02", "2024-01-05")
    assert "skip: 2 held by another live run" in str(p)
    assert without_held(p, {}) is p


def test_default_ledger_sits_beside_the_target_for_paths_and_uris() -> None:
    from prefect_backfill.pipeline import Pipeline
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.settings import BackfillSettings

    def keep(df):  # type: ignore[no-untyped-def]
        return df

    settings = BackfillSettings()
    local = Pipeline("l", "/lake/bronze/o", "/lake/silver/o/", "d", keep, "1")
    remote = Pipeline("r", "s3://b/bronze/o", "s3://b/silver/o", "d", keep, "1")
    assert ledger_location(local, settings) == "/lake/silver/_backfill_progress"
    assert ledger_location(remote, settings) == "s3://b/silver/_backfill_progress"


# -- the ledger against the tables' logs --------------------------------------------------------

from prefect_backfill.snapshots import PartitionFiles, TableSnapshot  # noqa: E402


def recorded(key: str, digest: str | None = "d1", target_id: str = "t1", rows_out: int = 5) -> PartitionState:
    return PartitionState(
        key,
        Status.COMPLETE,
        V2,
        "2",
        "run-1",
        datetime(2024, 7, 1),
        rows_out=rows_out,
        source_digest=digest,
        target_id=target_id,
    )


def snap(table_id: str = "t1", **digests: str) -> TableSnapshot:
    return TableSnapshot(True, table_id, 3, {k.replace("_", "-"): PartitionFiles(d, 10, 5) for k, d in digests.items()})


ONE = partitions_between("2024-01-01", "2024-01-01", Grain.DAY)


@pytest.mark.parametrize(
    ("state_", "source", "target", "why"),
    [
        (recorded("2024-01-01"), snap("s", **{"2024_01_01": "d2"}), snap(**{"2024_01_01": "x"}), "source changed"),
        (
            recorded("2024-01-01"),
            snap("s", **{"2024_01_01": "d1"}),
            TableSnapshot(exists=False),
            "target table missing",
        ),
        (recorded("2024-01-01"), snap("s", **{"2024_01_01": "d1"}), snap("t2", **{"2024_01_01": "x"}), "recreated"),
        (recorded("2024-01-01"), snap("s", **{"2024_01_01": "d1"}), snap("t1"), "partition missing from the target"),
        (recorded("2024-01-01", digest=None), snap("s", **{"2024_01_01": "d1"}), None, "not recorded"),
    ],
)
def test_a_complete_partition_runs_again_when_its_source_or_target_drifted(
    state_: PartitionState, source: TableSnapshot, target: TableSnapshot | None, why: str
) -> None:
    p = make_plan("orders", V2, ONE, {"2024-01-01": state_}, source=source, target=target)
    assert keys(p.to_run) == ["2024-01-01"] and why in p.why["2024-01-01"]
    assert f"run:  1 {p.why['2024-01-01'].split(' (')[0]}" in str(p)


def test_a_complete_partition_is_skipped_only_when_ledger_and_logs_agree() -> None:
    source = snap("s", **{"2024_01_01": "d1"})
    agree = make_plan(
        "orders", V2, ONE, {"2024-01-01": recorded("2024-01-01")}, source=source, target=snap(**{"2024_01_01": "x"})
    )
    assert agree.to_run == () and agree.skipped[0].reason.startswith("complete at version 2")
    # an allowed empty output has no files in the target: absent is what complete looks like
    empty = recorded("2024-01-01", rows_out=0)
    assert make_plan("orders", V2, ONE, {"2024-01-01": empty}, source=source, target=snap()).to_run == ()
    # unknown logs (a catalog table delta-rs cannot open): the ledger alone decides, as before
    unknown = make_plan(
        "orders", V2, ONE, {"2024-01-01": recorded("2024-01-01", digest=None)}, source=TableSnapshot.unknown()
    )
    assert unknown.to_run == ()


def test_plan_notes_partitions_the_source_has_no_data_for() -> None:
    wide = partitions_between("2023-12-30", "2024-01-02", Grain.DAY)
    p = make_plan("orders", V2, wide, {}, source=snap("s", **{"2024_01_01": "a", "2024_01_02": "b"}))
    assert p.notes == (
        "2 of 4 partitions to run have no data in the source (its partitions: 2024-01-01 … 2024-01-02); they "
        "fail as empty unless the pipeline allows empty partitions",
    )
    assert p.why["2023-12-30"] == "never run"


def test_what_another_run_completed_after_the_plan_is_left_out_at_claim_time() -> None:
    from prefect_backfill.planning import without_done_since

    planned = datetime(2024, 7, 1, 3, 0)
    before, after = datetime(2024, 7, 1, 2, 0), datetime(2024, 7, 1, 3, 5)
    p = make_plan("orders", V2, PARTS[:3], {}, Reprocess.ALL)
    current = {
        "2024-01-01": PartitionState("2024-01-01", Status.COMPLETE, V2, "2", "other", after),
        "2024-01-02": PartitionState("2024-01-02", Status.COMPLETE, V2, "2", "other", before),  # old: redo (all)
        "2024-01-03": PartitionState("2024-01-03", Status.COMPLETE, "1:old", "1", "other", after),  # other version
    }
    left = without_done_since(p, current, planned, "mine")
    assert keys(left.to_run) == ["2024-01-02", "2024-01-03"]
    assert [s.reason for s in left.skipped] == ["completed by another run since this run was planned (run other)"]
    assert without_done_since(p, current, planned, "other") is p  # its own completions are not "another run"
