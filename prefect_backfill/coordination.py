"""Several runs on one target table at once: a shared cap, and never two writers on one partition.

Runs are coordinated by the table they write (its :func:`target_key`), not by their pipeline's name:
the registry lets a second pipeline write a target only with the same definition (an alias), and a
daily run and a backfill of one table must see each other's claims whatever they are called; keyed by
name, two aliases would write the same partitions at once and both record them COMPLETE.

- **Cap.** At most ``cap`` partitions of a target are in flight across *every* run on it: nightly,
  manual, CLI, any alias. The cap's value is the Prefect global concurrency limit
  ``backfill-<pipeline>`` of the claiming run's pipeline when one exists (``deployments/setup.py --cap N``
  sets it), else the ``pipeline_cap`` setting. A run holds
  ``min(max_concurrency, cap − slots of other live runs on the target)`` slots for its whole duration,
  decided once, never per partition (a per-partition acquisition cost 7-11× on short partitions).
- **One writer per partition.** Under the target's claims lock a run reads the ledger, leaves out the
  partitions that another *live* run on the target has PENDING or RUNNING (read under that run's own
  pipeline: the ledger is keyed by pipeline name), records its own claims (PENDING events) and the
  slots it takes, and lets go of the lock.

Who is live, and how many slots they hold, comes from the run leases beside the ledger
(:mod:`prefect_backfill.leases`), not from a Prefect server: a killed run's partitions and slots are
free as soon as its lease is dead, on the embedded server as on a real one.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from prefect_backfill.claims_lock import claims_lock
from prefect_backfill.errors import CoordinationTimeoutError
from prefect_backfill.leases import Lease, LeaseTable, RunLease
from prefect_backfill.pipeline import TableRef
from prefect_backfill.planning import PartitionState, Plan, Status, without_done_since, without_held

__all__ = [
    "Claim",
    "cap_name",
    "claim",
    "ensure_limit",
    "free_slots",
    "held_on_target",
    "held_partitions",
    "pipeline_cap",
    "target_key",
]

logger = logging.getLogger(__name__)


def target_key(target: TableRef) -> str:
    """What identifies a target table for coordination: a path target's location without trailing
    ``/`` (string arithmetic: a URI stays a URI), a catalog table's name lower-cased (catalog names are
    case-insensitive). Not the Delta table id: it changes when the table is recreated, and runs on the
    old and the new table are still two writers of one place."""
    return target.location.rstrip("/") if target.is_path else target.location.lower()


def _slug(pipeline: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-")


def cap_name(pipeline: str) -> str:
    return f"backfill-{_slug(pipeline)}"


def ensure_limit(name: str, limit: int) -> int:
    """The global concurrency limit's value, creating it with ``limit`` if it does not exist (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(name).limit)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return int(client.read_global_concurrency_limit_by_name(name).limit)


def pipeline_cap(pipeline: str, default: int) -> int:
    """The pipeline's cap: its global concurrency limit's value (the one place operators set it)."""
    return ensure_limit(cap_name(pipeline), default)


def held_partitions(
    current: Mapping[str, PartitionState], own_run_id: str, live: Mapping[str, Lease]
) -> dict[str, str]:
    """Partitions that another live run has claimed (PENDING) or is writing (RUNNING): key → who."""
    return {
        key: live[state.run_id].describe()
        for key, state in current.items()
        if state.status in (Status.PENDING, Status.RUNNING) and state.run_id != own_run_id and state.run_id in live
    }


def held_on_target(
    pipeline: str,
    current: Mapping[str, PartitionState],
    states_of: Callable[[str], Mapping[str, PartitionState]],
    own_run_id: str,
    live: Mapping[str, Lease],
) -> dict[str, str]:
    """Partitions of the target that another live run holds, whichever pipeline it runs: key → who.

    ``live`` are the live runs on the target, ``current`` the ledger's current states of ``pipeline``
    and ``states_of(name)`` reads those of another pipeline. A run's claims are recorded under its own
    pipeline's name, so the states of each other pipeline with a live run are read, and only those
    that one of *its* live runs claimed count."""
    held = held_partitions(current, own_run_id, {r: lease for r, lease in live.items() if lease.pipeline == pipeline})
    for name in sorted({lease.pipeline for lease in live.values()} - {pipeline}):
        runs = {r: lease for r, lease in live.items() if lease.pipeline == name}
        for key, who in held_partitions(states_of(name), own_run_id, runs).items():
            held.setdefault(key, f"{who} of pipeline {name}")
    return held


def free_slots(cap: int, live: Mapping[str, Lease], own_run_id: str) -> int:
    """Slots of the cap that no other live run holds (``live``: every live run on the target, of any
    pipeline; the cap protects what the target's writers share)."""
    return max(0, cap - sum(lease.slots for run, lease in live.items() if run != own_run_id))


@dataclass(frozen=True)
class Claim:
    """What a run got: its plan without the partitions others hold, and its slots (0: nothing to run)."""

    plan: Plan
    slots: int


def claim(
    leases: LeaseTable,
    lease: RunLease,
    plan: Plan,
    *,
    current: Callable[[str], Mapping[str, PartitionState]],
    record_claims: Callable[[Plan], None],
    wanted: int,
    cap: int | None,
    timeout: float,
    planned_at: datetime | None = None,
    say: Callable[[str], None] = logger.info,
    sleep: Callable[[float], None] = time.sleep,
) -> Claim:
    """Under the target's claims lock: leave out what live runs on the target hold (whichever pipeline
    they run) and what other runs of this pipeline completed since the plan was made (``planned_at``: a
    run that waited for the cap must not redo their work), take free slots, record the claims.

    ``current(name)`` reads the ledger's current states of pipeline ``name``: this run's own, and those
    of every other pipeline with a live run on the target. ``cap`` is this run's pipeline's cap, and it
    is compared with the slots of *every* live run on the target: aliases share one definition and so
    one cap (were two caps set differently, each run keeps within its own, so the smaller one holds for
    the run that reads it). ``cap`` None: a run outside the cap (the daily pipeline's: it must never wait
    for a backfill's slots); it takes ``wanted`` slots at once and holds none of the cap, so no backfill
    waits for it either. Claims still apply: it never writes a partition another live run holds.

    With no free slot, waits (saying once who holds the slots and since when) and tries again, up to
    ``timeout`` seconds in all; then raises :class:`CoordinationTimeoutError`, naming the holders.
    """
    pipeline, target = plan.pipeline, lease.target
    deadline = time.monotonic() + timeout
    told = False
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        with claims_lock(
            leases,
            target,
            lease.lease,
            timeout=remaining,
            on_wait=lambda holder: say(f"waiting for the claims lock of {target}: held by {holder.describe()}"),
        ):
            live = leases.live_runs(target, pipeline)
            now = current(pipeline)
            mine = without_held(plan, held_on_target(pipeline, now, current, lease.run_id, live))
            if planned_at is not None:
                mine = without_done_since(mine, now, planned_at, lease.run_id)
            if not mine.to_run:
                return Claim(mine, 0)
            if cap is None:  # beside the cap, not in it
                record_claims(mine)
                return Claim(mine, wanted)
            slots = min(wanted, free_slots(cap, live, lease.run_id))
            if slots >= 1:
                lease.renew(slots=slots)  # visible to others before the lock is released
                record_claims(mine)
                return Claim(mine, slots)
            holders = "; ".join(
                f"{other.describe()} holds {other.slots}"
                for run, other in sorted(live.items())
                if run != lease.run_id and other.slots
            )
        if time.monotonic() >= deadline:
            raise CoordinationTimeoutError(
                f"all {cap} slots of {pipeline}'s cap are held ({holders}) and none was freed within "
                f"{timeout:.0f} s: wait for those runs, stop them, or raise the cap (deployments/setup.py --cap)"
            )
        if not told:
            say(f"waiting for a slot of {pipeline}'s cap ({cap}): {holders}")
            told = True
        sleep(min(5.0, remaining) * random.uniform(0.4, 0.6) + 0.1)
