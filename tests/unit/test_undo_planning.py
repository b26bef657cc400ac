"""The undo's decisions, as pure functions of the ledger's events and the log's facts (no Spark, no Delta):
which run a prefix names, what a run wrote, what is restored to which version, and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.planning import PartitionState, Status
from prefect_backfill.undo_planning import LogFacts, RunWrite, plan_undo, resolve_run, run_writes

T0 = datetime(2024, 7, 1, tzinfo=UTC)
RUN = "7f3a9c21-0000-4000-8000-000000000001"


def ev(key: str, status: Status, seconds: int, run: str = RUN, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run,
        "partition": key,
        "status": status.value,
        "event_time": T0 + timedelta(seconds=seconds),
        "version": "2",
        "fingerprint": "2:abc",
        "cached": False,
        "table_version": None,
        "replaced_version": None,
        "error": None,
        "source_digest": f"src-{key}",
        "target_id": "tid",
    }
    row.update(kw)
    return row


def test_a_run_is_named_by_its_id_or_an_unambiguous_prefix_of_eight_or_more() -> None:
    runs = {RUN: T0, "7f3a9c21-ffff-4000-8000-000000000002": T0, "0b1c2d3e-aaaa": T0 + timedelta(hours=1)}
    assert resolve_run(RUN, runs, "p") == RUN
    assert resolve_run("0b1c2d3e", runs, "p") == "0b1c2d3e-aaaa"
    with pytest.raises(InvalidRequestError, match="at least 8 of its first characters"):
        resolve_run("0b1c", runs, "p")
    with pytest.raises(InvalidRequestError, match="matches 2 runs of p"):
        resolve_run("7f3a9c21", runs, "p")
    with pytest.raises(InvalidRequestError, match=r"not in the ledger of p: check the run id; its latest runs: 0b1c"):
        resolve_run("deadbeef-0000", runs, "p")
    with pytest.raises(InvalidRequestError, match="no runs recorded"):
        resolve_run("deadbeef-0000", {}, "p")


def test_only_what_the_run_committed_is_a_candidate_and_the_rest_says_why() -> None:
    events = [
        # written twice by the run (e.g. two attempts that both committed): back to before the first
        ev("2024-01-01", Status.RUNNING, 1),
        ev("2024-01-01", Status.COMPLETE, 2, table_version=5, replaced_version=4),
        ev("2024-01-01", Status.COMPLETE, 3, table_version=8, replaced_version=7),
        ev("2024-01-02", Status.COMPLETE, 2, cached=True, table_version=3, error="cached: written by run r0"),
        ev("2024-01-03", Status.FAILED, 2, error="boom"),
        ev("2024-01-04", Status.PENDING, 1),
        ev("2024-01-05", Status.COMPLETE, 2),  # no commit version recorded
        ev("2024-01-06", Status.COMPLETE, 2, run="another", table_version=9, replaced_version=8),
    ]
    writes, not_written = run_writes(events, RUN)
    assert writes == {
        "2024-01-01": RunWrite("2024-01-01", 8, 4, "2", "2:abc", "src-2024-01-01", "tid"),
    }
    assert "served from a cache record (cached: written by run r0)" in not_written["2024-01-02"]
    assert "FAILED (boom)" in not_written["2024-01-03"]
    assert "never completed" in not_written["2024-01-04"]
    assert "commit version was not recorded" in not_written["2024-01-05"]
    assert "2024-01-06" not in not_written  # another run's partition is none of this undo's business


def test_a_cache_hit_is_told_by_its_typed_fields_and_names_the_run_it_came_from() -> None:
    """A cached COMPLETE of this release carries its origin in ``cached_from``, not in ``error``; one of an
    older release (above) still says where it came from, from its ``error``, shown as written."""
    events = [ev("2024-01-02", Status.COMPLETE, 2, cached=True, cached_from="r0", table_version=3)]
    writes, not_written = run_writes(events, RUN)
    assert writes == {}
    assert not_written["2024-01-02"] == (
        "the run did not write it: served from a cache record (written by run r0), nothing to undo"
    )


def write(key: str, commit: int = 5, before: int = 4) -> RunWrite:
    return RunWrite(key, commit, before, "2", "2:abc", f"src-{key}", "tid")


def state(key: str, status: Status, run: str, **kw: Any) -> PartitionState:
    return PartitionState(key, status, "2:abc", "2", run, T0, **kw)


def test_restore_untouched_partitions_refuse_the_rest_with_a_reason_each() -> None:
    keys = ["2024-01-0" + str(d) for d in range(1, 8)]
    writes = {k: write(k) for k in keys}
    facts = {
        "2024-01-01": LogFacts("d1", "d1", files_total=1, rows_at_restore=40, table_id_now="tid"),
        "2024-01-02": LogFacts("d1", "d1", rows_at_restore=0, table_id_now="tid"),  # did not exist before
        "2024-01-03": LogFacts("d1", "d2", later_commit=(7, "UPDATE"), table_id_now="tid"),
        "2024-01-04": LogFacts("d1", "d1", files_missing=2, files_total=3, table_id_now="tid"),
        "2024-01-05": LogFacts("d1", "d1", restore_readable=False, table_id_now="tid"),
        "2024-01-06": LogFacts("d1", "d1", table_id_now="other-table"),
        "2024-01-07": LogFacts("d1", "d2", table_id_now="tid"),
    }
    current = {
        "2024-01-07": state("2024-01-07", Status.COMPLETE, "later-run", table_version=9),
    }
    undo_plan = plan_undo("p", RUN, writes, {"2024-01-09": "the run did not write it: it FAILED (x)"}, facts, current)
    assert [(r.partition, r.version, r.undoes_version, r.rows) for r in undo_plan.restores] == [
        ("2024-01-01", 4, 5, 40),
        ("2024-01-02", 4, 5, 0),
    ]
    reasons = {r.partition: r.reason for r in undo_plan.refused}
    assert reasons["2024-01-03"].startswith("changed after the run's commit (version 5) by version 7 (UPDATE)")
    assert "--force restores it anyway" in reasons["2024-01-03"]
    assert "files of version 4 (before the run) were vacuumed (2 of 3 gone from storage)" in reasons["2024-01-04"]
    assert "version 4 (before the run) is no longer in the table's log" in reasons["2024-01-05"]
    assert "target table was recreated" in reasons["2024-01-06"]
    assert "the ledger: rewritten by run later-run at version 9" in reasons["2024-01-07"]
    # the whole run asked: a partition it did not write is nothing to undo, not a refusal (exit 0 possible)
    assert "2024-01-09" not in reasons
    assert [(r.partition, r.reason) for r in undo_plan.nothing_to_undo] == [
        ("2024-01-09", "the run did not write it: it FAILED (x)")
    ]
    named = plan_undo(
        "p",
        RUN,
        writes,
        {"2024-01-09": "the run did not write it: it FAILED (x)"},
        facts,
        current,
        asked=["2024-01-09"],
    )
    assert [r.reason for r in named.refused] == ["the run did not write it: it FAILED (x)"]  # named: refused
    assert {r.partition for r in undo_plan.refused if r.forceable} == {"2024-01-03", "2024-01-07"}
    assert undo_plan.groups == {4: ("2024-01-01", "2024-01-02")}
    text = str(undo_plan)
    assert "restore 2024-01-01 to version 4, 40 rows\n" in text
    assert "restore 2024-01-02 to version 4, 0 rows (did not exist then: removed)" in text
    assert "refuse  2024-01-04: the files of version 4" in text

    forced = plan_undo("p", RUN, writes, {}, facts, current, force=True)
    assert [r.partition for r in forced.restores] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-07"]
    assert forced.restores[2].overridden is not None and "version 7 (UPDATE)" in forced.restores[2].overridden
    # --force never restores what cannot be read, nor across a recreated table
    assert {r.partition for r in forced.refused} == {"2024-01-04", "2024-01-05", "2024-01-06"}


def test_already_undone_held_by_a_live_run_and_never_claimed_are_refused() -> None:
    writes = {k: write(k) for k in ("2024-01-01", "2024-01-02")}
    facts = {k: LogFacts("d1", "d1") for k in writes}
    current = {"2024-01-01": state("2024-01-01", Status.UNDONE, "undo-1", undone_run=RUN, table_version=6)}
    undo_plan = plan_undo(
        "p",
        RUN,
        writes,
        {},
        facts,
        current,
        asked=["2024-01-01", "2024-01-02", "2024-01-03"],
        held={"2024-01-02": "run abc on host h"},
        force=True,
    )
    assert undo_plan.restores == ()
    reasons = {r.partition: r.reason for r in undo_plan.refused}
    assert reasons == {
        "2024-01-01": "already undone (undo commit version 6)",
        "2024-01-02": "claimed by a live backfill (run abc on host h): undo it when that run ends",
        "2024-01-03": "the run did not write it: it never claimed it",
    }


def test_a_partition_only_compacted_since_the_run_is_restored_as_if_untouched() -> None:
    writes = {k: write(k) for k in ("2024-01-01", "2024-01-02")}
    facts = {  # both have other files now; the log says only the first kept its data (an OPTIMIZE)
        "2024-01-01": LogFacts("d1", "d2", files_total=1, rows_at_restore=40, table_id_now="tid", data_unchanged=True),
        "2024-01-02": LogFacts("d1", "d2", later_commit=(7, "MERGE"), table_id_now="tid"),
    }
    undo_plan = plan_undo("p", RUN, writes, {}, facts, {})
    assert [r.partition for r in undo_plan.restores] == ["2024-01-01"]
    assert [r.partition for r in undo_plan.refused] == ["2024-01-02"]


def test_a_commit_that_cannot_be_read_any_more_counts_as_possibly_touched() -> None:
    undo_plan = plan_undo("p", RUN, {"2024-01-01": write("2024-01-01")}, {}, {"2024-01-01": LogFacts(None, "d")}, {})
    assert undo_plan.refused[0].forceable
    assert "can no longer be read, so later changes cannot be ruled out" in undo_plan.refused[0].reason


def test_the_printed_plan_folds_neighbours_restored_alike_into_one_line() -> None:
    keys = [f"2024-01-{d:02d}" for d in range(1, 11)]
    writes = {k: write(k, commit=5 if k < "2024-01-06" else 7, before=4 if k < "2024-01-06" else 6) for k in keys}
    facts = {k: LogFacts("d", "d" if k != "2024-01-08" else "x", rows_at_restore=10) for k in keys}
    text = str(plan_undo("p", RUN, writes, {}, facts, {}))
    assert text.splitlines()[1:] == [
        "  restore 2024-01-01 … 2024-01-05 (5 partitions) to version 4, 50 rows",
        "  restore 2024-01-06 … 2024-01-07 (2 partitions) to version 6, 20 rows",
        "  restore 2024-01-09 … 2024-01-10 (2 partitions) to version 6, 20 rows",
        "  refuse  2024-01-08: changed after the run's commit (version 7): restoring would discard that; "
        "--force restores it anyway",
    ]
