"""Several runs of one pipeline at once: a shared cap, and never two writers on one partition.

- **Cap.** A Prefect global concurrency limit named ``backfill-<pipeline>`` (created by
  ``deployments/setup.py``) caps the partitions in flight across *every* run of the pipeline: nightly,
  manual, CLI. A run holds ``min(max_concurrency, limit)`` slots for its whole duration, acquired once,
  never per partition (one acquisition costs ~2 s on SQLite and waiters poll every 5-30 s, which
  made per-partition limits 7-11× slower in our measurements).
- **One writer per partition.** Under a short lock (``backfill-<pipeline>-claims``, limit 1) a run
  reads the ledger, leaves out the partitions that a *live* run has PENDING or RUNNING, and records
  its own claims (PENDING events) before releasing the lock. A partition left RUNNING by a dead run
  (crashed, cancelled, killed worker) is not held: the next run takes it over.

Without a Prefect server that knows these limits (the embedded one), the lock and the cap are
created on first use, so the rules hold for local runs too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_backfill.planning import PartitionState, Status

__all__ = ["cap_name", "claims_lock", "ensure_limit", "held_partitions", "run_slots"]

_LIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}


def _slug(pipeline: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-")


def cap_name(pipeline: str) -> str:
    return f"backfill-{_slug(pipeline)}"


def ensure_limit(name: str, limit: int) -> int:
    """The limit's current value, creating it with ``limit`` if it does not exist (idempotent)."""
    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(name).limit)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return int(client.read_global_concurrency_limit_by_name(name).limit)


@contextmanager
def claims_lock(pipeline: str) -> Iterator[None]:
    name = f"{cap_name(pipeline)}-claims"
    ensure_limit(name, 1)
    with concurrency(name, occupy=1, strict=True, lease_duration=120):
        yield


@contextmanager
def run_slots(pipeline: str, wanted: int, default_cap: int) -> Iterator[int]:
    """Hold up to ``wanted`` slots of the pipeline's cap for the whole run; yields how many."""
    limit = ensure_limit(cap_name(pipeline), default_cap)
    slots = max(1, min(wanted, limit))
    with concurrency(cap_name(pipeline), occupy=slots, strict=True, lease_duration=300):
        yield slots


def live_runs(run_ids: set[str]) -> set[str]:
    """Which of these flow runs are still alive according to the Prefect API."""
    ids = []
    for run_id in run_ids:
        try:
            ids.append(UUID(run_id))
        except ValueError:
            continue
    if not ids:
        return set()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
    return {str(r.id) for r in runs if r.state_type is not None and r.state_type.value in _LIVE}


def held_partitions(current: Mapping[str, PartitionState], own_run_id: str) -> dict[str, str]:
    """Partitions that another live run has claimed (PENDING) or is writing (RUNNING): key → run id."""
    claimed = {
        key: state.run_id
        for key, state in current.items()
        if state.status in (Status.PENDING, Status.RUNNING) and state.run_id != own_run_id
    }
    alive = live_runs(set(claimed.values()))
    return {key: run for key, run in claimed.items() if run in alive}
