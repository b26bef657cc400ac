"""The claims lock of a target table, beside the ledger with the run leases (:mod:`prefect_backfill.leases`).

The **claims lock** (one per target table: its partition is :func:`lock_name` of the target key)
serialises the short step in which a run decides which partitions it takes and how many slots it holds.
It is a compare-and-swap on the Delta table ``<ledger>_leases/locks``: the lock is a single row in its
own partition, replaced with an overwrite whose predicate names that partition, so two runs replacing it
from the same version conflict in Delta's optimistic concurrency and exactly one wins. A lock whose
holder is dead, or older than :data:`LOCK_SECONDS`, is taken over. Locks live in a table of their own
because delta-rs treats a concurrent overwrite as a conflict for appends too: renewals must never wait
on a lock.

Releases before target keys locked ``lock-<pipeline>``: during an upgrade an older run and a newer one
do not exclude each other at the claim step (a window of seconds); upgrade a ledger's workers together.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from prefect_backfill.errors import CoordinationTimeoutError, LedgerError
from prefect_backfill.holders import this_process
from prefect_backfill.leases import LOCK_SCHEMA, Lease, LeaseTable, first_line
from prefect_backfill.storage import delta_options
from prefect_backfill.store_probe import explained

__all__ = ["LOCK_SECONDS", "claims_lock", "lock_name"]

#: A claims lock older than this is taken over even if its holder looks alive (claiming takes seconds).
LOCK_SECONDS = 60.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def lock_name(target: str) -> str:
    """The partition of the claims lock of target key ``target``: a digest, since a partition value
    must be a safe string and a target key is a path, a URI or a table name."""
    return "lock-" + hashlib.sha1(target.encode()).hexdigest()[:16]


@contextlib.contextmanager
def claims_lock(
    leases: LeaseTable,
    target: str,
    run: Lease,
    timeout: float,
    on_wait: Callable[[Lease], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the claims lock of the target table ``target`` (a target key) for ``run``; raises
    CoordinationTimeoutError after ``timeout`` seconds of another live run holding it (``on_wait``
    hears who, once)."""
    name = lock_name(target)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        table = leases.read_table(leases.locks_path)
        rows = leases.read_rows(table, name, LOCK_SCHEMA)
        holder = Lease.from_row(rows[-1]) if rows else None
        now = _utc_now()
        if (
            holder is not None
            and holder.run_id != run.run_id
            and holder.live(now, this_process())
            and now - holder.renewed_at < timedelta(seconds=LOCK_SECONDS)
        ):
            if time.monotonic() >= deadline:
                raise CoordinationTimeoutError(
                    f"the claims lock of {target} is held by {holder.describe()} for over {timeout:.0f} s: "
                    "wait for it or stop it; a dead holder's lock is taken over within "
                    f"{LOCK_SECONDS:.0f} s"
                )
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            sleep(0.2 + random.uniform(0, 0.3))
            continue
        mine = replace(run, name=name, renewed_at=now, expires_at=now + timedelta(seconds=LOCK_SECONDS))
        if _swap(leases, table, name, mine):
            break
        sleep(random.uniform(0.01, 0.1))  # another run swapped first: look again
    try:
        yield
    finally:
        with contextlib.suppress(LedgerError):
            _release(leases, name, run.run_id)


def _swap(leases: LeaseTable, table: DeltaTable | None, name: str, lease: Lease) -> bool:
    """Replace the rows of partition ``name`` with ``lease``, only if nobody changed them since
    ``table``'s version was read. False if another writer got there first."""
    data = pa.Table.from_pylist([lease.row()], schema=LOCK_SCHEMA)  # drops the target (see LOCK_SCHEMA)
    try:
        if table is None:  # the first lease ever: create the table, then swap as usual
            with contextlib.suppress(DeltaError):
                write_deltalake(
                    leases.locks_path,
                    LOCK_SCHEMA.empty_table(),
                    mode="append",
                    partition_by=["name"],
                    storage_options=delta_options(leases.locks_path),
                )
            return False
        write_deltalake(
            table,
            data,
            mode="overwrite",
            predicate=f"name = '{name}'",
            commit_properties=CommitProperties(max_commit_retries=0),
        )
        return True
    except CommitFailedError:  # delta-rs's type for a commit that lost to a concurrent one (a conflict)
        return False
    except (DeltaError, OSError) as exc:
        raise LedgerError(
            explained(
                leases.locks_path,
                f"lease table {leases.locks_path} cannot be written ({first_line(exc)}): check that the "
                "ledger's folder is writable",
            )
        ) from exc


def _release(leases: LeaseTable, name: str, run_id: str) -> None:
    for _ in range(20):
        table = leases.read_table(leases.locks_path)
        rows = leases.read_rows(table, name, LOCK_SCHEMA)
        if not rows or str(rows[-1]["run_id"]) != run_id:
            return  # taken over already
        ended = replace(Lease.from_row(rows[-1]), ended=True, renewed_at=_utc_now())
        if _swap(leases, table, name, ended):
            return
        time.sleep(random.uniform(0.01, 0.1))
