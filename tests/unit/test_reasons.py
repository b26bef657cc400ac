"""Typed reasons (prefect_backfill.reasons): what a plan decides from a reason is its kind, never its words;
rewording every phrase changes no decision."""

from __future__ import annotations

import json
import pickle
from datetime import datetime

import pytest

from prefect_backfill import drift, reasons
from prefect_backfill.drift import DriftKind, is_target_drift
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.planning import (
    DueKind,
    DueReason,
    PartitionState,
    Reprocess,
    SkipKind,
    SkipReason,
    Status,
    held_keys,
    make_plan,
    without_done_since,
    without_held,
)
from prefect_backfill.snapshots import PartitionFiles, TableSnapshot

PARTS = partitions_between("2024-01-01", "2024-01-04", Grain.DAY)
FP = "2:abc"
T0 = datetime(2024, 7, 1)


def done(key: str, run: str = "run-1", when: datetime = T0) -> PartitionState:
    return PartitionState(key, Status.COMPLETE, FP, "2", run, when, rows_out=40, target_id="tid", target_digest="d1")


def target(**parts: tuple[str, int]) -> TableSnapshot:
    files = {k.lstrip("_").replace("_", "-"): PartitionFiles(d, 1, n) for k, (d, n) in parts.items()}
    return TableSnapshot(exists=True, table_id="tid", partitions=files)


def test_a_reason_is_its_kind_its_phrase_and_its_detail_and_prints_as_before() -> None:
    held = SkipReason(SkipKind.HELD, "run abcdef12 (host h, pid 7)")
    assert held == "held by another live run (run abcdef12 (host h, pid 7))"
    assert (held.kind, held.head, held.detail) == (
        SkipKind.HELD,
        "held by another live run",
        "run abcdef12 (host h, pid 7)",
    )
    assert json.dumps({"k": held}) == json.dumps({"k": str(held)})  # `backfill plan --json` as before
    again = pickle.loads(pickle.dumps(held))
    assert type(again) is SkipReason and again.kind is SkipKind.HELD and again == held
    with pytest.raises(AttributeError):
        held.kind = SkipKind.EXCLUDED  # type: ignore[misc]


def test_the_plan_counts_reasons_by_their_phrase_even_when_details_hold_parentheses() -> None:
    who = "run abcdef12 (host h (rack 3), pid 7)"
    text = str(without_held(make_plan("orders", FP, PARTS, {}), {"2024-01-02": who, "2024-01-03": "run x"}))
    assert "skip: 2 held by another live run" in text


def test_rewording_every_phrase_changes_no_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in [*DueKind, *SkipKind]:
        monkeypatch.setitem(reasons._PHRASES, kind, f"reworded {kind.value} (with a parenthesis)")
    monkeypatch.setattr(drift, "REASONS", {kind: f"reworded {kind.value}" for kind in DriftKind})
    current = {
        "2024-01-01": done("2024-01-01"),
        "2024-01-02": done("2024-01-02"),  # its partition is gone from the target: drifted
        "2024-01-03": PartitionState("2024-01-03", Status.UNDONE, FP, "2", "undo-1", T0),
    }
    plan = make_plan("orders", FP, PARTS, current, Reprocess.MISSING, target=target(_2024_01_01=("d1", 40)))
    assert [p.key for p in plan.to_run] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert {k: r.kind for k, r in plan.why.items()} == {
        "2024-01-02": DueKind.TARGET_DRIFTED,
        "2024-01-03": DueKind.UNDONE,
        "2024-01-04": DueKind.NEVER_RUN,
    }
    assert [is_target_drift(r) for r in plan.why.values()] == [True, False, False]
    assert plan.why["2024-01-02"].head == "reworded missing"
    assert [s.reason.kind for s in plan.skipped] == [SkipKind.COMPLETE]
    held = without_held(plan, {"2024-01-04": "run other"})
    assert held_keys(held) == ("2024-01-04",)
    later = {"2024-01-03": done("2024-01-03", run="other", when=datetime(2024, 7, 2))}
    left = without_done_since(held, later, T0, "mine")
    assert [s.reason.kind for s in left.skipped] == [SkipKind.COMPLETE, SkipKind.HELD, SkipKind.DONE_MEANWHILE]
    assert held_keys(left) == ("2024-01-04",)


def test_a_bare_text_is_no_reason_to_act_on() -> None:
    """Only a typed reason says the target drifted: the same words in a plain string do not."""
    typed = DueReason(DueKind.TARGET_DRIFTED, head=drift.REASONS[DriftKind.MISSING])
    assert is_target_drift(typed) and not is_target_drift(str(typed)) and not is_target_drift(None)
