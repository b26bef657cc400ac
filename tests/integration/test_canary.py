"""The canary gate on real Spark + Delta + a Prefect server (the test harness's): canaries first, their
diff, then an answer from the terminal prompt, from the flow run's approval form (the API the UI uses:
resume with run input), or no answer in time."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.canary import Decision, install_local_gate
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import CanaryStoppedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from prefect_backfill.run_state import failed_by_server
from tests.integration.conftest import BRONZE_END, BRONZE_START, Lake

pytestmark = pytest.mark.spark


def days_in_target(spark: Any, path: str) -> list[str]:
    found = spark.read.format("delta").load(path).select("order_date").distinct().collect()
    return sorted(str(r["order_date"]) for r in found)


def complete(lake: Lake, name: str) -> list[str]:
    return sorted(k for k, s in Ledger(lake.ledger).current(name).items() if s.status is Status.COMPLETE)


def test_a_rejected_canary_stops_the_run_after_the_canaries(lake: Lake, spark: Any) -> None:
    pipeline = lake.make(to_silver_orders)
    asked: list[str] = []

    def reject(diff: str) -> Decision:
        asked.append(diff)
        return Decision(False, "terminal", "amounts look wrong")

    install_local_gate(reject)
    try:
        with pytest.raises(CanaryStoppedError) as stopped:
            backfill(pipeline=pipeline.name, start=BRONZE_START, end=BRONZE_END, canary=2, retries=0)
    finally:
        install_local_gate(None)
    assert len(asked) == 1 and "2024-01-01" in asked[0] and "2024-01-08" in asked[0] and "amount_usd" in asked[0]
    assert "rejected (terminal): amounts look wrong" in str(stopped.value) and "6 left PENDING" in str(stopped.value)
    assert stopped.value.exit_code == 5
    assert complete(lake, pipeline.name) == ["2024-01-01", "2024-01-08"]  # first and last: the canaries only
    assert days_in_target(spark, lake.target) == ["2024-01-01", "2024-01-08"]


def test_approved_canaries_let_the_rest_run(lake: Lake, spark: Any) -> None:
    pipeline = lake.make(to_silver_orders)
    install_local_gate(lambda diff: Decision(True, "terminal"))
    try:
        summary = backfill(
            pipeline=pipeline.name, start=BRONZE_START, end=BRONZE_END, canary_partitions=["2024-01-04"], retries=0
        ).to_dict()
    finally:
        install_local_gate(None)
    assert summary["ok"] and len(summary["completed"]) == 8
    events = Ledger(lake.ledger).events(pipeline.name).to_pylist()
    finished = [e["partition"] for e in events if e["status"] == "COMPLETE"]
    assert finished[0] == "2024-01-04"  # the canary was written before anything else


def _answer_when_paused(pipeline: str, approve: bool, note: str, answered: list[Any]) -> threading.Thread:
    """What an operator does in the UI: find the paused run (of this pipeline: runs are named after it),
    submit the form (resume with run input)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import keyset_from_paused_state

    from prefect_backfill.reporting import artifact_key

    progress_key = artifact_key(pipeline, "progress")

    def answer() -> None:
        deadline = time.monotonic() + 240
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                    )
                )
                mine = [r for r in paused if r.name.startswith(f"{pipeline}-")]
                if mine:
                    # What the reviewer sees meanwhile: the progress of the whole range, not of the canaries.
                    progress = client.read_latest_artifacts(
                        artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[progress_key]))
                    )
                    answered.append(progress[0].description if progress else None)
                    # What the form says: the input's description, saved beside its schema.
                    keyset = keyset_from_paused_state(mine[0].state)
                    form = client.read_flow_run_input(mine[0].id, keyset["description"])
                    answered.append(form)
                    # A bare Submit (no choice made) is refused by the server and decides nothing.
                    try:
                        resume_flow_run(mine[0].id, run_input={"note": ""})
                        answered.append("the bare Submit was accepted")
                    except RuntimeError as refused:  # checked in the test's thread, after the run
                        answered.append(str(refused))
                    answered.append(client.read_flow_run(mine[0].id).state.type)
                    decision = "approve" if approve else "reject"
                    resume_flow_run(mine[0].id, run_input={"decision": decision, "note": note})
                    answered.append(mine[0].id)
                    return
                time.sleep(0.5)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("approve", [True, False])
def test_the_approval_form_on_the_paused_flow_run_decides(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch, approve: bool
) -> None:
    monkeypatch.setenv("BACKFILL_CANARY_POLL_SECONDS", "1")
    pipeline = lake.make(to_silver_orders)
    answered: list[Any] = []
    thread = _answer_when_paused(pipeline.name, approve, "" if approve else "factor is off", answered)
    if approve:
        summary = backfill(pipeline=pipeline.name, start=BRONZE_START, end="2024-01-03", canary=1, retries=0).to_dict()
        assert summary["ok"] and len(summary["completed"]) == 3
    else:
        with pytest.raises(CanaryStoppedError, match=r"rejected \(operator\): factor is off"):
            backfill(pipeline=pipeline.name, start=BRONZE_START, end="2024-01-03", canary=1, retries=0)
        assert complete(lake, pipeline.name) == ["2024-01-02"]  # the middle one
    thread.join(5)
    assert answered, "the flow run never paused at the gate"
    assert answered[0] == f"{pipeline.name}: 1 of 3 written, waiting for approval at the canary gate"
    form = answered[1]
    assert f"{pipeline.name}: 1 canary partition(s) written, 2 more wait for this decision" in form
    assert "| 2024-01-02 | " in form and "| total | " in form  # the canary's row and the totals
    assert "**approve** writes the other 2 partition(s)" in form
    assert "'decision' is a required property" in answered[2], answered[2]
    assert answered[3].name == "PAUSED"  # the bare Submit left it waiting


def test_no_answer_in_time_stops_the_run(lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_CANARY_POLL_SECONDS", "1")
    pipeline = lake.make(lambda df: to_silver_orders(df).withColumn("amount_usd", F.col("amount")))
    state = backfill(
        pipeline=pipeline.name,
        start=BRONZE_START,
        end="2024-01-02",
        canary=1,
        canary_timeout_s=3,
        retries=0,
        return_state=True,
    )
    # Prefect itself fails a run whose pause timed out ("never resumed"): nothing is left paused, and the
    # CLI turns that state into the gate's own message and exit code (see prefect_backfill.cli.run).
    assert state.is_failed() and "never resumed" in (state.message or "")
    assert failed_by_server(state)  # what the CLI tells it by: a Failed the flow did not make (no data)
    assert len(complete(lake, pipeline.name)) == 1
