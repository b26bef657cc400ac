"""The ``mark`` policy of a downstream cascade, carried out: after an upstream commit, the downstream
partitions that read what it wrote become STALE in their own ledger (:mod:`prefect_backfill.cascade`).

Called by the chunk executor after the commit and *before* the commit's partitions are recorded COMPLETE:
a kill between the two leaves the upstream partitions not complete, so the rerun writes them again and
marks again, and no upstream partition is ever complete with its downstream unmarked. Only downstream
partitions COMPLETE in their ledger are marked (one never run, failed or already stale is due anyway).
Marking twice is harmless: the downstream's next default run takes a STALE partition once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect_backfill.cascade import Policy, Upstream, downstream_of, mark_record, policy_of
from prefect_backfill.events import emit, partitions_marked_stale
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.ledger_record import PartitionState, Status
from prefect_backfill.partitions import Partition, parse_partition_key
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.preparing import ledger_location
from prefect_backfill.registry import downstream_edges
from prefect_backfill.settings import BackfillSettings

__all__ = ["CascadeStep", "Marked", "cascade_preview", "mark_downstream"]


@dataclass(frozen=True, slots=True)
class Marked:
    """What one upstream commit marked in one downstream pipeline."""

    pipeline: str
    partitions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CascadeStep:
    """What a run of an upstream pipeline would do to one downstream pipeline (``backfill plan``)."""

    pipeline: str
    policy: Policy
    mapping: str
    partitions: tuple[str, ...]  # the downstream partitions, complete now, that would become STALE

    def to_dict(self) -> dict[str, object]:
        return {
            "pipeline": self.pipeline,
            "policy": self.policy.value,
            "mapping": self.mapping,
            "partitions": list(self.partitions),
        }

    def __str__(self) -> str:
        if self.policy is Policy.NONE:
            return f"{self.pipeline} ({self.mapping}, policy none): left as it is"
        if not self.partitions:
            return f"{self.pipeline} ({self.mapping}, mark): nothing complete there depends on these partitions"
        keys = self.partitions
        shown = ", ".join(keys[:4]) + (f", … {keys[-1]}" if len(keys) > 4 else "")
        return f"{self.pipeline} ({self.mapping}, mark): {len(keys)} partition(s) would become STALE: {shown}"


def _to_mark(
    down: Pipeline, edge: Upstream, ups: Sequence[Partition], settings: BackfillSettings
) -> tuple[Ledger, list[tuple[PartitionState, tuple[Partition, ...]]]]:
    """``down``'s ledger, and its partitions complete now that read any of ``ups`` through ``edge``, each
    with its current state and the upstream partitions that pulled it in."""
    ledger = Ledger(ledger_location(down, settings))
    current = ledger.current(down.name)
    pulled = downstream_of(edge.mapping, ups, down.grain)
    return ledger, [
        (state, because)
        for part, because in pulled.items()
        if (state := current.get(part.key)) is not None and state.status is Status.COMPLETE
    ]


def cascade_preview(
    spec: Pipeline, keys: Sequence[str], settings: BackfillSettings, override: Policy | None = None
) -> list[CascadeStep]:
    """What running ``keys`` of ``spec`` would mark downstream, edge by edge; writes nothing."""
    ups = [parse_partition_key(k, spec.grain) for k in keys]
    steps = []
    for down, edge in downstream_edges(spec.name):
        policy = policy_of(edge, down.cascade, override)
        marked: tuple[str, ...] = ()
        if policy is Policy.MARK and ups:
            marked = tuple(state.partition for state, _ in _to_mark(down, edge, ups, settings)[1])
        steps.append(CascadeStep(down.name, policy, edge.mapping.describe(), marked))
    return steps


def mark_downstream(
    spec: Pipeline, run_id: str, keys: Sequence[str], settings: BackfillSettings, override: Policy | None = None
) -> list[Marked]:
    """Mark STALE the downstream partitions that read ``keys`` of ``spec`` (just committed by run ``run_id``),
    in every downstream pipeline whose edge's policy (``override`` first) is ``mark``. One append per
    downstream ledger, waited for; one event per downstream pipeline."""
    ups = [parse_partition_key(k, spec.grain) for k in keys]
    marked = []
    for down, edge in downstream_edges(spec.name):
        if policy_of(edge, down.cascade, override) is not Policy.MARK:
            continue
        ledger, due = _to_mark(down, edge, ups, settings)
        if not due:
            continue
        ledger.record(
            [
                LedgerEvent(
                    run_id=run_id,
                    pipeline=down.name,
                    partition=state.partition,
                    status=Status.STALE,
                    version=state.version,
                    fingerprint=state.fingerprint,
                    upstream=mark_record(spec.name, because),
                )
                for state, because in due
            ],
            wait=True,
        )
        by_key = {state.partition: [p.key for p in because] for state, because in due}
        emit([partitions_marked_stale(down.name, spec.name, by_key, run_id=run_id)])
        marked.append(Marked(down.name, tuple(by_key)))
    return marked
