"""The canary gate's form: a required choice with no default, and a description that says what the
canaries changed (so a reviewer decides from the form, not from a log line)."""

from __future__ import annotations

import pydantic
import pytest

from prefect_backfill.canary import gate_summary
from prefect_backfill.canary_gate import CanaryDecision
from prefect_backfill.diff import KeyChanges, PartitionDiff, changed_columns


def test_the_decision_is_required_and_has_no_default() -> None:
    schema = CanaryDecision.model_json_schema()
    assert schema["required"] == ["decision"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert "default" not in schema["properties"]["decision"]
    assert all(p.get("description") for p in schema["properties"].values())  # every field says what it does
    with pytest.raises(pydantic.ValidationError, match="decision"):
        CanaryDecision.model_validate({"note": ""})  # a bare Submit
    with pytest.raises(pydantic.ValidationError):
        CanaryDecision.model_validate({"decision": True})  # the old toggle's answer is not a decision
    assert CanaryDecision.model_validate({"decision": "reject", "note": "off"}).note == "off"


def test_the_form_carries_the_summary_as_its_description() -> None:
    form = CanaryDecision.with_initial_data(description="**the summary**")
    assert form._description == "**the summary**"
    assert form.model_json_schema()["required"] == ["decision"]  # still no default after with_initial_data


def test_changed_columns_leave_out_unchanged_sums_and_float_noise() -> None:
    d = PartitionDiff(
        "2024-01-02",
        20,
        22,
        {"amount": (100.0, 110.0), "qty": (5.0, 5.0), "cents": (0.1 + 0.2, 0.3), "new": (None, 7.0)},
        KeyChanges(2, 0, 3),
    )
    assert changed_columns(d) == ["amount: 100 → 110 (+10.0%)", "new: – → 7", "keys: +2 −0 changed 3"]
    assert changed_columns(PartitionDiff("x", 1, 1, {"qty": (5.0, 5.0)}, KeyChanges(0, 0, 0))) == []


def test_gate_summary_per_canary_and_in_total_with_what_each_answer_does() -> None:
    diffs = [
        PartitionDiff("2024-01-01", 10, 10, {"amount": (50.0, 55.0), "qty": (3.0, 3.0)}),
        PartitionDiff("2024-03-31", 10, 12, {"amount": (50.0, 50.0), "qty": (3.0, 3.0)}),
    ]
    text = gate_summary("orders", diffs, remaining=180, artifact_url="http://ui/artifacts/artifact/abc")
    lines = text.splitlines()
    assert lines[0] == "**orders: 2 canary partition(s) written, 180 more wait for this decision.**"
    assert "| 2024-01-01 | 10 → 10 | amount: 50 → 55 (+10.0%) |" in lines
    assert "| 2024-03-31 | 10 → 12 (+20.0%) | none |" in lines
    assert "| total | 20 → 22 (+10.0%) | amount: 100 → 105 (+5.0%) |" in lines
    assert "**approve** writes the other 180 partition(s)" in text and "**reject** stops the run" in text
    assert "[canary diff artifact](http://ui/artifacts/artifact/abc)" in text
    assert "Artifacts tab" in gate_summary("orders", diffs, remaining=1)  # no UI address known
    assert "no diff recorded" in gate_summary("orders", [], remaining=3)
