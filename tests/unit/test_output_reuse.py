"""What a chunk does with its transform's output, as pure rules: which plans are computed again by the
write rather than cached (prefect_backfill.engine.output_reuse), and the rows a commit wrote, read from
its files' statistics (prefect_backfill.engine.commits), which the ledger records when they differ from
what was counted (a transform that is not deterministic)."""

from __future__ import annotations

from prefect_backfill.engine.commits import committed_rows
from prefect_backfill.engine.output_reuse import PlanShape, cheap_to_recompute
from prefect_backfill.snapshots import PartitionFiles, TableSnapshot


def _cheap(*kinds: str, deterministic: bool = True) -> bool:
    return cheap_to_recompute(PlanShape(kinds, deterministic))


def test_the_write_computes_again_unless_that_would_draw_other_rows_or_run_python_again() -> None:
    assert _cheap("Project", "Filter", "LogicalRelation")
    assert _cheap("Project", "Window", "Aggregate", "Join", "Deduplicate", "Sort", "LogicalRelation")  # shuffles
    for python in ("BatchEvalPython", "ArrowEvalPython", "MapInPandas", "MapInArrow", "FlatMapGroupsInPandas"):
        assert not _cheap("Project", python, "Filter", "LogicalRelation"), python
    assert not _cheap("Project", "Filter", "LogicalRelation", deterministic=False)  # a random draw


def test_the_rows_a_commit_wrote_come_from_its_files_and_are_unknown_without_statistics() -> None:
    files = {
        "2024-01-01": PartitionFiles("a", 100, 40),
        "2024-01-02": PartitionFiles("b", 100, 7),
    }
    snapshot = TableSnapshot(exists=True, version=3, partitions=files)
    assert committed_rows(snapshot, ["2024-01-01", "2024-01-02", "2024-01-03"]) == {
        "2024-01-01": 40,
        "2024-01-02": 7,
        "2024-01-03": 0,  # emptied by the commit: no files left
    }
    no_stats = TableSnapshot(exists=True, version=3, partitions={"2024-01-01": PartitionFiles("a", 100, None)})
    assert committed_rows(no_stats, ["2024-01-01"]) is None
    assert committed_rows(None, ["2024-01-01"]) is None
