"""The phase marks a bench reads (prefect_backfill.phases): written only when asked, never failing a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_backfill import phases


def test_marks_go_to_the_file_in_order_with_a_phase_ended_however_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "phases.jsonl"
    monkeypatch.setenv(phases.ENV, str(out))
    phases.mark("main")
    with pytest.raises(RuntimeError), phases.phase("prepare"):
        raise RuntimeError("bad input")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["step"] for line in lines] == ["main", "prepare:start", "prepare:end"]
    assert lines[0]["t"] <= lines[1]["t"] <= lines[2]["t"]
    assert {line["thread"] for line in lines} == {"MainThread"}


def test_nothing_is_written_unless_asked_and_an_unwritable_file_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(phases.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with phases.phase("prepare"):
        phases.mark("main")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(phases.ENV, str(tmp_path / "missing-folder" / "phases.jsonl"))
    phases.mark("main")  # dropped: a measurement is never a reason to fail a run
    assert list(tmp_path.iterdir()) == []
