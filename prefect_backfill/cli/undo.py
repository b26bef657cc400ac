"""``backfill undo``: restore what a run overwrote, refusing what changed since; stops in order on a signal."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from prefect_backfill.cli.app import AsJson, _exit_codes_help, _keys, _options, _say, app, console
from prefect_backfill.cli.run import _cancel_running


def _undo_unless_stopped(prepared: Any, carry_out: Any) -> Any:
    """Carry the undo out; Ctrl-C or SIGTERM meanwhile cancels its restore job before the commit (one
    commit: all or nothing), says so and exits 130 / 143. A restore that committed first is recorded
    as usual and reported as done: the signal came too late to stop it."""
    from prefect_backfill import stopping

    with stopping.stop_on_signals(lambda _: _cancel_running(prepared)):
        try:
            return carry_out(prepared)
        except Exception:
            stop = stopping.requested()
            if stop is None:
                raise
    _options["interrupt_reported"] = True
    _say(
        f"interrupted ({stop.said}): the restore was cancelled before its commit, nothing was written; "
        "run the same command again to undo",
        style="yellow",
    )
    raise typer.Exit(stop.exit_code)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@app.command(epilog=_exit_codes_help())
def undo(
    pipeline: str,
    run_id: Annotated[
        str, typer.Option("--run", help="The run to undo: its id, or 8+ first characters of it (see backfill status).")
    ],
    partitions: Annotated[
        str | None, typer.Option("--partitions", help="Only these partition keys of the run (comma-separated).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Only the run's partitions from here (inclusive).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="… to here (inclusive).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also restore partitions a later commit changed (discarding that change).")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (needed without a terminal).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Restore the partitions a run wrote to their content before it (Delta time travel + replaceWhere, one
    commit), partition by partition. Refuses, with the reason, a partition a later commit changed (unless
    --force), one whose old files were vacuumed, and one the run did not write; exits 1 if it refused any.
    The next `backfill run` reprocesses the undone partitions."""
    from prefect_backfill.restoring import carry_out, prepare_undo, raise_if_refused

    prepared = prepare_undo(pipeline, run_id, partitions=_keys(partitions), start=start, end=end, force=force)
    undo_plan = prepared.plan
    if not as_json:
        console.print(Text(str(undo_plan)), soft_wrap=True, highlight=False)
    if undo_plan.restores and not yes:
        if as_json or not _stdin_is_terminal():
            from prefect_backfill.errors import InvalidRequestError

            raise InvalidRequestError(
                "no terminal to confirm the undo in: pass --yes to restore without a prompt (nothing was written)"
            )
        if not typer.confirm(f"Restore {len(undo_plan.restores)} partition(s) of {pipeline}?", default=False):
            _say("nothing was written", style="yellow")
            raise typer.Exit(1)
    outcome = _undo_unless_stopped(prepared, carry_out)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": undo_plan.pipeline,
                    "run_id": undo_plan.run_id,
                    "undo_id": outcome.undo_id,
                    "table_version": outcome.table_version,
                    "restored": [
                        {
                            "partition": r.partition,
                            "version": r.version,
                            "undoes_version": r.undoes_version,
                            "rows": r.rows,
                            "forced": r.overridden,
                        }
                        for r in undo_plan.restores
                    ],
                    "refused": [
                        {"partition": r.partition, "reason": r.reason, "forceable": r.forceable}
                        for r in undo_plan.refused
                    ],
                    "not_written": [{"partition": r.partition, "reason": r.reason} for r in undo_plan.nothing_to_undo],
                },
                indent=2,
            )
        )
    elif outcome.restored:
        keys = outcome.restored
        _say(
            f"restored {len(keys)} partition(s) of {pipeline} in one commit (version {outcome.table_version}), "
            f"recorded as UNDONE; the next `backfill run {pipeline} --start {keys[0]} --end {keys[-1]}` "
            "reprocesses them",
            style="green",
        )
    raise_if_refused(prepared, outcome)
