"""The canary gate: run a few partitions first, show what they changed, and go on only when approved.

Why: a wrong transform found after six months were rewritten costs a night to undo; found after three
partitions it costs a glance. The canaries are spread over the range (first, middle, last: a bug that
hits only old or only recent data shows), or named explicitly. They are written like any partition
(checks, ledger, cache, diff); then the run publishes their diff and stops at the gate:

- in a flow run (deployments, a CLI pointed at a Prefect server): Prefect's ``pause_flow_run`` with an
  input form (``canary_gate.CanaryDecision``) on the flow run page; approve continues, reject stops
  the run, and no answer within ``canary_timeout_s`` stops it too;
- in the ``backfill`` CLI on a terminal: the same question as a prompt (:func:`install_local_gate`), since
  the embedded server's UI is out of reach;
- ``approve=True`` (``--approve``): no question; the canaries still run first and their diff is published.

A stopped run leaves the canaries COMPLETE (``backfill undo`` restores them) and the rest PENDING for a
later run. Pure selection and values here (no Prefect: planning imports this); the form and the waiting
are in :mod:`prefect_backfill.canary_gate`.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefect_backfill.diff import PartitionDiff, changed_columns, rows_change, totals
from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Partition

__all__ = [
    "DecidedBy",
    "Decision",
    "gate_summary",
    "install_local_gate",
    "local_gate",
    "pick_canaries",
]


def pick_canaries(to_run: Sequence[Partition], count: int, explicit: Sequence[str] = ()) -> list[Partition]:
    """``explicit`` keys (each must be one of the partitions to run), else ``count`` partitions spread
    evenly over ``to_run`` in time order, always including the first and the last when ``count`` ≥ 2."""
    ordered = sorted(to_run)
    if explicit:
        by_key = {p.key: p for p in ordered}
        unknown = [k for k in explicit if k not in by_key]
        if unknown:
            raise InvalidRequestError(
                f"canary partition {unknown[0]} is not one of the partitions this run would write: pick canaries "
                "inside --start/--end that are not complete yet (see `backfill plan`)"
            )
        return sorted({by_key[k] for k in explicit})
    if count <= 0 or not ordered:
        return []
    if count >= len(ordered):
        return list(ordered)
    if count == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (count - 1)
    return sorted({ordered[round(i * step)] for i in range(count)})


class DecidedBy(enum.StrEnum):
    """Who (or what) decided at the canary gate; the run acts on this, never on a message."""

    OPERATOR = "operator"  # the form on the paused flow run's page (UI or API)
    TERMINAL = "terminal"  # the CLI's prompt
    APPROVE_FLAG = "--approve"  # no question asked
    TIMEOUT = "timeout"  # nobody answered within canary_timeout_s
    SIGNAL = "signal"  # a stop signal (Ctrl-C, SIGTERM) while waiting; ``note`` says which


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer: go on (``approved``) or stop, who decided, and their note."""

    approved: bool
    by: DecidedBy
    note: str = ""

    def __post_init__(self) -> None:  # a plain value from outside (a terminal gate's code) as the enum
        object.__setattr__(self, "by", DecidedBy(self.by))


def gate_summary(pipeline: str, diffs: Sequence[PartitionDiff], remaining: int, artifact_url: str | None = None) -> str:
    """What a reviewer needs at the gate, in the form's description (markdown): per canary and in total,
    rows before → after and the columns whose sums changed; what each answer does; the full diff.

    Only changed columns are listed: a reviewer reads the form, not a table of 20 unchanged sums."""
    lines = [
        f"**{pipeline}: {len(diffs)} canary partition(s) written, {remaining} more wait for this decision.**",
        "",
        "| canary | rows | changed sums |",
        "|---|---|---|",
    ]
    for d in [*diffs, totals(diffs)] if diffs else []:
        changed = changed_columns(d)
        cells = "; ".join(changed) if changed else "none"
        lines.append(f"| {d.partition} | {rows_change(d)} | {cells.replace('|', '/')} |")
    if not diffs:
        lines.append("| – | no diff recorded | – |")
    lines += [
        "",
        f"**approve** writes the other {remaining} partition(s); **reject** stops the run (Failed, with your "
        "note): the canaries stay written and the rest stays PENDING for a later run.",
    ]
    if artifact_url:
        lines.append(f"Full diff: [canary diff artifact]({artifact_url}).")
    else:
        lines.append("Full diff: the run's canary diff artifact (Artifacts tab).")
    return "\n".join(lines)


#: A question asked in this process instead of pausing the flow run (the CLI's terminal prompt).
_local: dict[str, Callable[[str], Decision]] = {}
_local_lock = threading.Lock()


def install_local_gate(ask: Callable[[str], Decision] | None) -> None:
    """The CLI, on a terminal, answers the gate itself: ``ask(summary)`` is called in the flow's thread
    (the flow runs in the CLI's process). None removes it."""
    with _local_lock:
        if ask is None:
            _local.pop("ask", None)
        else:
            _local["ask"] = ask


def local_gate() -> Callable[[str], Decision] | None:
    with _local_lock:
        return _local.get("ask")
