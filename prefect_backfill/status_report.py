"""What ``backfill status`` says of a pipeline, as a value: counts per status, failed, stale and undone
partitions, live runs and what they hold, interrupted claims, the ETA of what is in flight, drift. Read
from the ledger, the run leases and the target's Delta log (no Spark for a path target, no Prefect server);
the CLI only renders it (text, or its :meth:`StatusReport.to_dict` as JSON)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_backfill.audit import AuditReport, Finding, audit, read_target
from prefect_backfill.cascade import upstream_reason
from prefect_backfill.catalog import resolved
from prefect_backfill.coordination import target_key
from prefect_backfill.errors import one_line
from prefect_backfill.eta import Eta, estimate
from prefect_backfill.leases import Lease, LeaseTable, lease_location
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Partition, parse_partition_key, partitions_between
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import PartitionState, Status
from prefect_backfill.preparing import ledger_location
from prefect_backfill.schema_change import shape_key
from prefect_backfill.settings import get_settings

__all__ = ["StatusReport", "status_report"]


@dataclass(frozen=True)
class StatusReport:
    """One pipeline's status over ``partitions`` (empty when nothing is recorded and no range was given)."""

    pipeline: str
    fingerprint: str
    ledger_path: str
    recorded: bool
    partitions: tuple[Partition, ...] = ()
    states: Mapping[str, PartitionState] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    failed: tuple[tuple[str, str], ...] = ()  # (partition, error)
    checks: Mapping[str, str] = field(default_factory=dict)  # failed partition -> the check that failed it
    stale: tuple[str, ...] = ()  # COMPLETE by an older transform version
    undone: tuple[tuple[str, str], ...] = ()  # (partition, the run undone)
    upstream_stale: tuple[tuple[str, str], ...] = ()  # (partition, its cause): marked by an upstream run
    live: Mapping[str, Lease] = field(default_factory=dict)  # runs whose lease is live, by run id
    in_flight: int = 0  # partitions claimed by live runs
    interrupted: tuple[str, ...] = ()  # PENDING/RUNNING by runs no longer alive
    eta: Eta | None = None
    drift: AuditReport | None = None
    drift_unknown: str = ""  # why drift could not be checked
    old_shape: tuple[str, ...] = ()  # COMPLETE with other columns than the target has now (a schema change)

    @property
    def never_run(self) -> int:
        return len(self.partitions) - len(self.states)

    @property
    def drifted(self) -> dict[str, Finding]:
        return {f.partition: f for f in self.drift.findings} if self.drift is not None else {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``backfill status --json``: the same keys whatever is recorded."""
        out: dict[str, Any] = {
            "pipeline": self.pipeline,
            "fingerprint": self.fingerprint,
            "range": [self.partitions[0].key, self.partitions[-1].key] if self.partitions else None,
            "counts": {st.value: self.counts.get(st.value, 0) for st in Status},
            "never_run": self.never_run,
            "failed": [{"partition": k, "error": e, "check": self.checks.get(k)} for k, e in self.failed],
            "stale": list(self.stale),
            "undone": [{"partition": k, "undone_run": r} for k, r in self.undone],
            "upstream_stale": [{"partition": k, "because": why} for k, why in self.upstream_stale],
            "eta_seconds": self.eta.seconds if self.eta else None,
            "recorded": self.recorded,
            "live_runs": [
                {
                    "run_id": lease.run_id,
                    "pipeline": lease.pipeline,
                    "host": lease.holder.host,
                    "pid": lease.holder.pid,
                    "since": lease.started_at.isoformat(),
                    "slots": lease.slots,
                }
                for lease in self.live.values()
            ],
            "interrupted": list(self.interrupted),
            "old_shape": list(self.old_shape),
        }
        if self.partitions:
            out |= {
                "drifted": [f.to_dict() for f in self.drifted.values()],
                "drift_checked": self.drift is not None,
                "drift_unknown": self.drift_unknown,  # why it was not checked ("" when it was, or nothing was complete)
                # complete partitions with no recorded target digest: present, rows checked, a rewrite not visible
                "drift_unverified": list(self.drift.unverified) if self.drift is not None else [],
            }
        return out


def status_report(spec: Pipeline, start: str | None, end: str | None) -> StatusReport:
    """The status of ``spec`` from ``start`` to ``end`` (default: the ledger's first to last partition)."""
    for value in (start, end):  # a bad bound is a usage error even when nothing is recorded yet
        if value is not None:
            parse_partition_key(value, spec.grain)
    ledger_path = ledger_location(spec, get_settings())
    states, history = Ledger(ledger_path).read(spec.name)
    recorded = bool(states)
    if not states and not (start and end):
        return StatusReport(spec.name, spec.fingerprint, ledger_path, recorded=False)
    keys = sorted(states)
    lo = start or parse_partition_key(keys[0], spec.grain).start
    hi = end or parse_partition_key(keys[-1], spec.grain).start
    partitions = partitions_between(lo, hi, spec.grain)
    in_range = {p.key for p in partitions}
    states = {k: s for k, s in states.items() if k in in_range}
    # "Running" only for a run whose lease is live: a killed run's claims are interrupted, not running.
    # Live runs on the target, of any pipeline writing it (an alias's run holds its partitions too).
    live = LeaseTable(lease_location(ledger_path)).live_runs(target_key(spec.target), spec.name)
    open_claims = {k: s for k, s in states.items() if s.status in (Status.PENDING, Status.RUNNING)}
    in_flight = {k: s for k, s in open_claims.items() if s.run_id in live}
    running = sum(1 for s in in_flight.values() if s.status is Status.RUNNING)
    drift, drift_unknown, shape = _drift_of(spec, [p.key for p in partitions], states)
    return StatusReport(
        pipeline=spec.name,
        fingerprint=spec.fingerprint,
        ledger_path=ledger_path,
        recorded=recorded,
        partitions=tuple(partitions),
        states=states,
        counts=Counter(s.status.value for s in states.values()),
        failed=tuple(sorted((k, s.error or "") for k, s in states.items() if s.status is Status.FAILED)),
        checks={k: s.check_name for k, s in states.items() if s.status is Status.FAILED and s.check_name},
        stale=tuple(
            sorted(k for k, s in states.items() if s.status is Status.COMPLETE and s.fingerprint != spec.fingerprint)
        ),
        undone=tuple(sorted((k, s.undone_run or "") for k, s in states.items() if s.status is Status.UNDONE)),
        upstream_stale=tuple(
            sorted((k, upstream_reason(s.upstream, s.run_id)) for k, s in states.items() if s.status is Status.STALE)
        ),
        live=live,
        in_flight=len(in_flight),
        interrupted=tuple(sorted(set(open_claims) - set(in_flight))),
        eta=estimate(len(in_flight), [], max(1, running), history) if in_flight else None,
        drift=drift,
        drift_unknown=drift_unknown,
        old_shape=tuple(
            sorted(
                k
                for k, s in states.items()
                if s.status is Status.COMPLETE and shape is not None and s.shape and shape_key(s.shape) != shape
            )
        ),
    )


def _drift_of(
    spec: Pipeline, keys: Sequence[str], states: Mapping[str, PartitionState]
) -> tuple[AuditReport | None, str, str | None]:
    """The audit of ``keys`` (None when nothing is complete), or why it could not be made: status is a
    view, so an unreadable target log is said, not raised. With the target's shape (its columns' names
    and types), when its log was read."""
    if not any(s.status is Status.COMPLETE for s in states.values()):
        return None, "", None
    try:
        settings = get_settings()
        spec = resolved(spec, settings)  # a catalog target: its storage, from the metastore (no Spark)
        if spec.target.path is None:  # status starts no Spark to find it
            where = (
                f"the metastore at {settings.metastore_uri} has no Delta table of that name"
                if settings.metastore_uri
                else "where its files are is unknown without BACKFILL_METASTORE_URI"
            )
            return None, f"catalog target {spec.target}: {where} (`backfill audit {spec.name}` asks Spark)", None
        target = read_target(spec, states)
    except Exception as exc:
        return None, f"the target's log cannot be read ({one_line(exc, 200)})", None
    if not target.known:
        why = (
            f"the log of {spec.target} gives no partitions by {spec.partition_column} (clustered or unpartitioned: "
            f"`backfill audit {spec.name}` reads its rows)"
        )
        return None, why, target.shape
    return audit(spec.name, str(spec.target), keys, states, target), "", target.shape
