"""The canary gate's step in a run: write the canaries, publish what they changed, and ask (a
paused flow run's form, the terminal, or ``--approve``). The form (:class:`CanaryDecision`, a Prefect
``RunInput``) is here; the pure selection and the values are in :mod:`.canary`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from prefect.artifacts import create_markdown_artifact, create_progress_artifact
from prefect.input import RunInput
from prefect.logging import get_run_logger
from pydantic import Field

from prefect_backfill import stopping
from prefect_backfill.canary import DecidedBy, Decision, gate_summary, local_gate
from prefect_backfill.chunking import Chunk
from prefect_backfill.diff import diff_markdown, run_diffs
from prefect_backfill.partitions import Partition
from prefect_backfill.reporting import artifact_key
from prefect_backfill.submitting import RunContext, collect, submit

__all__ = ["CanaryDecision", "canaries_pass"]


class CanaryDecision(RunInput):
    """The form on the paused flow run's page.

    The decision is a required choice with no default: a boolean toggle (off by default) made a bare
    Submit reject the backfill while Prefect's toast said "resumed". Without a choice the server refuses
    the input (it validates it against this schema) and the run stays paused, so nothing is decided by
    accident. The form's description (:func:`gate_summary`) says what the canaries changed.
    """

    decision: Literal["approve", "reject"] = Field(
        title="Decision",
        description="approve: write the rest of the range with this version. reject: stop the run here "
        "(the canaries stay written; `backfill undo` restores them).",
    )
    note: str = Field(
        "",
        title="Note",
        description="Why (optional): kept in the run's log, and in its state message on reject.",
    )


def canaries_pass(
    ctx: RunContext, canaries: Sequence[Partition], total: int, slots: int, lost: Callable[[], bool]
) -> bool:
    """The canary gate (:mod:`prefect_backfill.canary`): write the canaries, each in its own chunk,
    publish what they changed, and ask. False stops the run (``out.gate`` says why)."""
    logger = get_run_logger()
    prepared, run_id, out = ctx.prepared, ctx.run_id, ctx.out
    request, pipeline = prepared.request, prepared.pipeline
    keys = [p.key for p in canaries]
    logger.info("canary partitions first: %s", ", ".join(keys))
    sizes = prepared.source.partitions if prepared.source is not None else {}
    chunks = [Chunk((p,), sizes[p.key].size_bytes if p.key in sizes else 0) for p in canaries]
    collect(ctx, submit(ctx, chunks, slots, lost))
    first = set(keys)
    failed = [k for k, _ in out.failed if k in first]
    if stopping.requested() is not None:
        return False  # a stop signal: said as such by the summary, not as the gate's verdict
    if failed or any(k in first for k in out.not_started):
        out.gate = f"canary partition(s) did not complete ({', '.join(failed) or 'window closed'})"
        return False
    events = prepared.ledger.events(pipeline.name).to_pylist()
    diffs = run_diffs(events, run_id)
    text = diff_markdown(f"{pipeline.name}: canaries of run {run_id[:8]}", diffs)
    artifact_id = create_markdown_artifact(
        text, key=artifact_key(pipeline.name, "canary"), description=f"{pipeline.name}: canary diff"
    )
    if not request.approve:  # the progress artifact counts the whole range while it waits
        create_progress_artifact(
            100.0 * len(keys) / max(1, total),
            key=artifact_key(pipeline.name, "progress"),
            description=f"{pipeline.name}: {len(keys)} of {total} written, waiting for approval at the canary gate",
        )
    try:
        with stopping.interruptible():  # Ctrl-C at the prompt, SIGTERM while paused: the run stops here
            if request.approve:
                decision = Decision(True, DecidedBy.APPROVE_FLAG)
            elif (ask := local_gate()) is not None:
                decision = ask(text)
            else:
                summary = gate_summary(pipeline.name, diffs, max(0, total - len(keys)), _artifact_url(artifact_id))
                decision = _pause_for_approval(
                    request.canary_timeout_s, len(keys), summary, prepared.settings.canary_poll_seconds
                )
    except stopping.Interrupted:
        stop = stopping.requested()
        decision = Decision(False, DecidedBy.SIGNAL, stop.said if stop is not None else "")
    logger.info(
        "canary gate: %s by %s%s",
        "approved" if decision.approved else "stopped",
        decision.by,
        f" ({decision.note})" if decision.note else "",
    )
    if not decision.approved and stopping.requested() is None:  # a stop is said as a stop, not a rejection
        how = "no answer within the timeout" if decision.by is DecidedBy.TIMEOUT else f"rejected ({decision.by})"
        out.gate = how + (f": {decision.note}" if decision.note else "")
    return decision.approved


def _artifact_url(artifact_id: object) -> str | None:
    """The UI page of an artifact, where the server's UI address is known (Prefect's ``url_for`` has no
    artifact route; the UI's own is ``/artifacts/artifact/<id>``)."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/artifacts/artifact/{artifact_id}" if ui and artifact_id else None


def _pause_for_approval(timeout_s: int, canaries: int, summary: str, poll_seconds: float) -> Decision:
    """Pause the flow run with the approval form on its page, ``summary`` as the form's description; the
    answer (or the timeout) decides."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    get_run_logger().warning(
        "%d canary partition(s) written: see the canary diff artifact, then approve or reject on this flow run's "
        "page (Resume, then choose approve or reject); no answer within %d s stops the run",
        canaries,
        timeout_s,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=CanaryDecision.with_initial_data(description=summary),
            timeout=timeout_s,
            poll_interval=max(1, int(poll_seconds)),
            key="canary",
        )
    except FlowPauseTimeout:
        return Decision(False, DecidedBy.TIMEOUT)
    return Decision(answer.decision == "approve", DecidedBy.OPERATOR, answer.note)
