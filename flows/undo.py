"""The undo flow: ``backfill undo`` for deployments, with the same parameters and no prompt.

The unattended path: it restores what it can (one commit), records it, publishes what it did as a
markdown artifact, and ends **Failed** naming every partition it refused, so a scheduler or an operator
watching the UI never mistakes a partial undo for a complete one. It holds no logic of its own
(:mod:`prefect_backfill.restoring` does it all, for the CLI too).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from prefect_backfill.reporting import artifact_key
from prefect_backfill.restoring import UndoOutcome, carry_out, prepare_undo, raise_if_refused
from prefect_backfill.undo_planning import UndoPlan

__all__ = ["undo"]


def _run_name() -> str:
    params = flow_run.parameters
    return f"undo-{params['pipeline']}-{str(params['run_id'])[:8]}"


def _markdown(undo_plan: UndoPlan, outcome: UndoOutcome) -> str:
    lines = [
        f"# Undo of run {undo_plan.run_id} ({undo_plan.pipeline})",
        "",
        f"{len(outcome.restored)} restored in commit version {outcome.table_version}, {len(undo_plan.refused)} refused",
        "",
        "| partition | outcome | detail |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r.partition} | restored to version {r.version} | {(r.overridden or '').replace('|', '/')} |"
        for r in undo_plan.restores
    ]
    lines += [f"| {r.partition} | refused | {r.reason.replace('|', '/')} |" for r in undo_plan.refused]
    lines += [f"| {r.partition} | nothing to undo | {r.reason.replace('|', '/')} |" for r in undo_plan.nothing_to_undo]
    return "\n".join(lines)


@flow(name="undo", flow_run_name=_run_name, persist_result=False)
def undo(
    pipeline: str,
    run_id: str,
    partitions: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Restore the partitions run ``run_id`` of ``pipeline`` wrote to their content before it.

    Args:
        pipeline: registered pipeline name.
        run_id: the run to undo (its id, or 8+ first characters of it).
        partitions: only these partition keys of the run.
        start: only the run's partitions from here (inclusive) …
        end: … to here (inclusive).
        force: also restore partitions a later commit changed, discarding that change.

    Ends Failed, naming each refused partition and why, if it refused any.
    """
    logger = get_run_logger()
    prepared = prepare_undo(pipeline, run_id, partitions=tuple(partitions or ()), start=start, end=end, force=force)
    logger.info("%s", prepared.plan)
    outcome = carry_out(prepared, str(flow_run.id) if flow_run.id else None)
    create_markdown_artifact(
        key=artifact_key(pipeline, "undo"),
        markdown=_markdown(prepared.plan, outcome),
        description=f"{pipeline}: undo of run {prepared.plan.run_id}",
    )
    if outcome.restored:
        logger.info("restored %d partition(s) in commit version %s", len(outcome.restored), outcome.table_version)
    raise_if_refused(prepared, outcome)
    return {
        "pipeline": pipeline,
        "run_id": prepared.plan.run_id,
        "undo_id": outcome.undo_id,
        "restored": list(outcome.restored),
        "table_version": outcome.table_version,
    }
