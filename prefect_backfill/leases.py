"""Liveness that does not depend on who cleans up: run leases and a claims lock, kept beside the ledger.

A backfill run holds a **lease**: a row in the Delta table ``<ledger>_leases/runs`` naming the run, its
pipeline, the target table it writes (:func:`prefect_backfill.coordination.target_key`), its host and
process, the slots of the cap it holds, and when the lease expires. A heartbeat thread
renews it every :data:`HEARTBEAT_SECONDS`; a run that ends writes a last row that ends it. A lease is
live only while it is renewed, so a run killed with ``kill -9``, a crashed worker or a lost machine
lets go of its partitions and slots on its own:

- at once, when the holder ran on this host and its process no longer exists (checked by pid and the
  process's start time, so a reused pid does not pass for the dead run);
- at the latest :data:`LEASE_SECONDS` after its last renewal, anywhere else.

Nothing here asks a server to notice a dead run: the embedded Prefect server (the ``backfill`` CLI's
default) runs no zombie automation and no lease reaper, and a lease that only a server can expire
leaks there (measured: slots still held 17 minutes after a kill).

Coordination is keyed by the **target**, not by the pipeline: two pipelines writing one table (an
alias: same definition, another name) must see each other's runs, or both write the same partitions
and both record them COMPLETE. Lease rows of older releases have no ``target``: such a lease is matched
by its pipeline's name, as those releases did, so a run started before an upgrade is still respected.
(The other way round does not hold: once a newer run has added the ``target`` column, an older
release's appends no longer match the table's schema; upgrade every worker of a ledger together.)

The **claims lock** of a target table lives beside the leases, in :mod:`prefect_backfill.claims_lock`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from prefect_backfill.errors import LedgerError
from prefect_backfill.holders import Holder, this_process
from prefect_backfill.storage import arrow_paths, delta_options
from prefect_backfill.store_probe import explained

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "Lease",
    "LeaseTable",
    "RunLease",
    "lease_location",
]

#: A lease not renewed for this long is dead, wherever its holder ran.
LEASE_SECONDS = 60.0
#: How often a live run renews its lease (four renewals per lease period: one late write is harmless).
HEARTBEAT_SECONDS = 15.0

logger = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("name", pa.string()),  # the partition: "run" for run leases, "lock-<hash of target>" for a claims lock
        ("kind", pa.string()),  # the same value, kept in the data files (Delta keeps partition values in the log)
        ("run_id", pa.string()),
        ("pipeline", pa.string()),
        ("host", pa.string()),
        ("boot_id", pa.string()),
        ("pid", pa.int64()),
        ("pid_start", pa.int64()),
        ("slots", pa.int32()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("renewed_at", pa.timestamp("us", tz="UTC")),
        ("expires_at", pa.timestamp("us", tz="UTC")),
        ("ended", pa.bool_()),
    ]
)
#: The claims lock's rows need no target (the partition's name is derived from it): the locks table keeps
#: the schema of older releases, so their runs can still take their own locks beside ours.
LOCK_SCHEMA = SCHEMA
SCHEMA = SCHEMA.append(pa.field("target", pa.string()))  # the target key; absent (null) in older rows
_RETRIES = CommitProperties(max_commit_retries=100)


def lease_location(ledger_path: str) -> str:
    """The lease folder of a ledger: a sibling of it (string arithmetic: URIs stay URIs)."""
    return ledger_path.rstrip("/") + "_leases"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Lease:
    """The latest word on one run's lease (or on a claims lock)."""

    name: str
    run_id: str
    pipeline: str
    holder: Holder
    slots: int
    started_at: datetime
    renewed_at: datetime
    expires_at: datetime
    ended: bool = False
    target: str | None = None  # the target key; None in rows written by older releases

    def on(self, target: str, pipeline: str) -> bool:
        """Whether this lease is of a run writing ``target``; a lease with no target (older releases) is
        matched by its pipeline's name, the key those releases coordinated by."""
        return self.target == target if self.target is not None else self.pipeline == pipeline

    def live(self, now: datetime, here: Holder) -> bool:
        """Live = not ended, not expired, and, if it was taken on this machine, its process exists."""
        if self.ended or self.expires_at <= now:
            return False
        if self.holder.same_machine(here):
            return self.holder.process_exists()
        return True

    def describe(self) -> str:
        return (
            f"run {self.run_id[:8]} (host {self.holder.host}, pid {self.holder.pid}, "
            f"since {self.started_at:%Y-%m-%d %H:%M:%S} UTC)"
        )

    def row(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.name,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "host": self.holder.host,
            "boot_id": self.holder.boot_id,
            "pid": self.holder.pid,
            "pid_start": self.holder.pid_start,
            "slots": self.slots,
            "started_at": self.started_at,
            "renewed_at": self.renewed_at,
            "expires_at": self.expires_at,
            "ended": self.ended,
            "target": self.target,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Lease:
        holder = Holder(str(row["host"]), str(row["boot_id"] or ""), int(row["pid"]), row["pid_start"])  # type: ignore[call-overload,arg-type]
        return cls(
            name=str(row["kind"]),
            run_id=str(row["run_id"]),
            pipeline=str(row["pipeline"]),
            holder=holder,
            slots=int(row["slots"] or 0),  # type: ignore[call-overload]
            started_at=row["started_at"],  # type: ignore[arg-type]
            renewed_at=row["renewed_at"],  # type: ignore[arg-type]
            expires_at=row["expires_at"],  # type: ignore[arg-type]
            ended=bool(row["ended"]),
            target=None if row.get("target") is None else str(row["target"]),
        )


class LeaseTable:
    """The lease folder of a ledger: Delta tables ``runs`` (appended) and ``locks`` (swapped), written
    with delta-rs (no JVM, ~10 ms a write)."""

    APPEND_RETRIES = 10

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/")
        self.runs_path = f"{self.path}/runs"
        self.locks_path = f"{self.path}/locks"
        # The runs table as this object last wrote it: a renewal loads only the commits since (delta-rs
        # `update_incremental`: 9 requests to an object store each time); opened anew, every renewal read
        # one more commit file than the last (11 requests at the first, 129 at the 60th, until delta-rs's
        # checkpoint at the 100th commit).
        self._runs: DeltaTable | None = None
        self._writing = threading.Lock()

    def __repr__(self) -> str:
        return f"LeaseTable({self.path!r})"

    def read_table(self, path: str | None = None) -> DeltaTable | None:
        try:
            location = path or self.runs_path
            return DeltaTable(location, storage_options=delta_options(location))
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise LedgerError(
                explained(
                    self.path,
                    f"lease table {self.path} cannot be read ({first_line(exc)}): check the path and its "
                    "permissions, or move it aside (it holds only leases of running backfills)",
                )
            ) from exc

    def read_rows(
        self, table: DeltaTable | None, name: str | None = None, schema: pa.Schema = SCHEMA
    ) -> list[dict[str, object]]:
        if table is None:
            return []
        files = table.file_uris()
        if not files:
            return []
        filesystem, paths = arrow_paths(files)
        dataset = pads.dataset(paths, format="parquet", schema=schema, filesystem=filesystem)  # a missing column: null
        data = dataset.to_table(filter=pads.field("kind") == name) if name is not None else dataset.to_table()
        return data.sort_by("renewed_at").to_pylist()  # type: ignore[no-any-return]

    def append(self, leases: list[Lease]) -> None:
        """Append lease rows; a commit that loses a race (table creation, a compaction) is tried again.
        ``schema_mode="merge"`` adds the ``target`` column to a table written by an older release."""
        data = pa.Table.from_pylist([lease.row() for lease in leases], schema=SCHEMA)
        with self._writing:
            self._append(data)

    def _append(self, data: pa.Table) -> None:
        for attempt in range(self.APPEND_RETRIES):
            try:
                write_deltalake(
                    self._latest_runs() or self.runs_path,
                    data,
                    mode="append",
                    partition_by=["name"],
                    schema_mode="merge",
                    commit_properties=_RETRIES,
                    storage_options=delta_options(self.runs_path),
                )
                return
            except CommitFailedError:
                self._runs = None  # opened anew next time: the race may have replaced what it knew
                if attempt == self.APPEND_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))
            except (DeltaError, OSError) as exc:
                self._runs = None  # the table may have been moved aside or recreated: open it anew next time
                raise LedgerError(
                    explained(
                        self.runs_path,
                        f"lease table {self.runs_path} cannot be written ({first_line(exc)}): check that the "
                        "ledger's folder is writable",
                    )
                ) from exc

    def _latest_runs(self) -> DeltaTable | None:
        """The runs table brought up to its latest commit (None before its first write), for a write."""
        if self._runs is None:
            with contextlib.suppress(TableNotFoundError):
                self._runs = DeltaTable(self.runs_path, storage_options=delta_options(self.runs_path))
        else:
            self._runs.update_incremental()
        return self._runs

    def runs(self, pipeline: str | None = None) -> dict[str, Lease]:
        """The latest lease row per run (of ``pipeline``)."""
        latest: dict[str, Lease] = {}
        for row in self.read_rows(self.read_table(), "run"):
            lease = Lease.from_row(row)
            if pipeline is not None and lease.pipeline != pipeline:
                continue
            held = latest.get(lease.run_id)
            if held is None or (lease.renewed_at, lease.ended) >= (held.renewed_at, held.ended):
                latest[lease.run_id] = lease
        return latest

    def live_runs(self, target: str, pipeline: str, now: datetime | None = None) -> dict[str, Lease]:
        """Runs writing ``target`` whose lease is live now, whichever pipeline they run (``pipeline``
        matches the leases of older releases, which name no target: see :meth:`Lease.on`)."""
        now, here = now or _now(), this_process()
        return {
            run: lease for run, lease in self.runs().items() if lease.on(target, pipeline) and lease.live(now, here)
        }

    def compact(self) -> None:
        """Merge the renewals' small files, and checkpoint the log: a reader that opens the table (another
        run asking who is live) then reads the checkpoint and the commits after it, not every commit."""
        with contextlib.suppress(DeltaError, OSError):
            table = self.read_table()
            if table is not None:
                table.optimize.compact(partition_filters=[("name", "=", "run")], commit_properties=_RETRIES)
                table.create_checkpoint()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RunLease:
    """This run's lease: taken on entry, renewed by a heartbeat thread, ended on exit.

    ``target`` is the target key of the table the run writes (runs on one target see each other's
    leases, whatever their pipeline). ``slots`` is how much of the cap the run holds; changing it writes
    a renewal at once, so other runs see the slots it takes before it starts using them. ``lost`` turns
    true when renewals failed for longer than the lease: another run may have taken over, so take no new
    partitions.
    """

    def __init__(
        self,
        table: LeaseTable,
        run_id: str,
        pipeline: str,
        target: str,
        heartbeat: float = HEARTBEAT_SECONDS,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self.table, self.heartbeat, self.duration = table, heartbeat, lease
        now = _now()
        expires = now + timedelta(seconds=lease)
        self.lease = Lease("run", run_id, pipeline, this_process(), 0, now, now, expires, target=target)
        self._valid_until = now
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"backfill-lease:{run_id[:8]}", daemon=True)
        self._renewals = 0

    @property
    def run_id(self) -> str:
        return self.lease.run_id

    @property
    def target(self) -> str:
        return self.lease.target or ""

    def __enter__(self) -> RunLease:
        self.renew()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._guard:
            self.lease = replace(self.lease, slots=0, ended=True, renewed_at=_now())
        try:
            self.table.append([self.lease])
        except LedgerError as err:  # the lease expires on its own; say so
            logger.warning("could not end lease of run %s: %s (it expires on its own)", self.run_id, err)

    def renew(self, slots: int | None = None) -> None:
        with self._guard:
            now = _now()
            self.lease = replace(
                self.lease,
                slots=self.lease.slots if slots is None else slots,
                renewed_at=now,
                expires_at=now + timedelta(seconds=self.duration),
            )
            lease = self.lease
        self.table.append([lease])
        self._valid_until = lease.expires_at
        self._renewals += 1

    @property
    def lost(self) -> bool:
        return _now() >= self._valid_until

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.renew()
                if self._renewals % 100 == 0:
                    self.table.compact()
            except Exception as exc:  # a failed renewal is retried at the next beat
                logger.warning("lease of run %s not renewed: %s", self.run_id, exc)
