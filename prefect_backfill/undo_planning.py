"""Which partitions of a run an undo restores, to which version, and why it refuses the others.

Pure: the caller hands in the run's ledger events, the ledger's current states and what the target's
Delta log says (:class:`LogFacts`); nothing here touches Spark, Delta or Prefect, so every rule is
unit-tested in milliseconds. :mod:`prefect_backfill.restoring` gathers the inputs and carries the plan out.

What "the partition before the run" is: each COMPLETE event records the target version its commit
created (``table_version``) and the version that commit replaced (``replaced_version``). The content
before the run is the partition *at the replaced version of the run's first write of it*; the run's
work on it ends with its *last* write (``table_version`` of its latest COMPLETE). Only partitions the
run itself committed are candidates: a cached COMPLETE wrote nothing (another run's record served it),
a FAILED or interrupted partition was never replaced (the commit is all or nothing), and a partition
the run never claimed is none of its business. Each of those is refused with what happened to it.

Refusals, in the order they are checked (the first that applies is the reason):

1. already undone: the ledger's latest word is an UNDONE of this very run;
2. claimed by a live backfill (it is about to write the partition);
3. the target table was recreated since the run (another table id): its versions are not the run's;
4. the version to restore is no longer in the log, or its files of the partition were vacuumed: Delta
   cannot read them, whatever ``--force`` says;
5. touched later: a commit after the run's changed the partition's files (another writer, a later
   backfill, an OPTIMIZE). Restoring would silently discard that commit's work, so it is refused unless
   ``force`` — then the partition is restored anyway and the plan says what was discarded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.planning import PartitionState, Status

__all__ = [
    "MIN_PREFIX",
    "LogFacts",
    "Refusal",
    "Restore",
    "RunWrite",
    "UndoPlan",
    "plan_undo",
    "resolve_run",
    "run_writes",
]

#: A run id may be given by a prefix of at least this many characters, if no other run shares it.
MIN_PREFIX = 8


@dataclass(frozen=True, slots=True)
class RunWrite:
    """What a run committed to one partition: the version its last write created (``commit_version``)
    and the version before its first write (``restore_version``), with the identity of what it wrote
    (for the UNDONE event and the cache record that must stop being served)."""

    partition: str
    commit_version: int
    restore_version: int
    version: str
    fingerprint: str
    source_digest: str | None = None
    target_id: str | None = None


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What the target's Delta log says about one partition a run wrote.

    ``digest_at_commit``/``digest_now``: the digest of the partition's files right after the run's commit
    and now (None: that version cannot be read any more). ``later_commit``: the first commit after the
    run's that touched the partition, as (version, operation), when the log still has it.
    ``restore_readable``: the version to restore can still be loaded from the log; ``files_missing`` /
    ``files_total``: of the partition's files at that version, how many are gone from storage (vacuumed).
    ``table_id_now``: the target's table id today. ``data_unchanged``: the files changed since the run's
    commit but no later commit changed the partition's data (a compaction: OPTIMIZE), as the log shows."""

    digest_at_commit: str | None
    digest_now: str
    restore_readable: bool = True
    files_missing: int = 0
    files_total: int = 0
    later_commit: tuple[int, str] | None = None
    table_id_now: str | None = None
    rows_at_restore: int | None = None
    data_unchanged: bool = False


@dataclass(frozen=True, slots=True)
class Restore:
    """Put ``partition`` back to its content at ``version`` (undoing the run's ``undoes_version``).
    ``overridden``: the refusal ``force`` overrode (what the restore discards), if any."""

    partition: str
    version: int
    undoes_version: int
    rows: int | None = None
    overridden: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A partition the undo leaves as it is, and why. ``forceable``: ``--force`` would restore it."""

    partition: str
    reason: str
    forceable: bool = False


@dataclass(frozen=True)
class UndoPlan:
    """What an undo of ``run_id`` does: ``restores`` (in partition order) and ``refused`` (with reasons)."""

    pipeline: str
    run_id: str
    restores: tuple[Restore, ...]
    refused: tuple[Refusal, ...]
    force: bool = False
    #: Partitions of the run it did not write (cached, FAILED, interrupted), when the whole run is undone:
    #: nothing to restore, and not a refusal (their rows are already what they were before the run).
    nothing_to_undo: tuple[Refusal, ...] = ()

    @property
    def groups(self) -> dict[int, tuple[str, ...]]:
        """Partitions by the version they are restored to (one time-travel read each)."""
        out: dict[int, list[str]] = {}
        for r in self.restores:
            out.setdefault(r.version, []).append(r.partition)
        return {v: tuple(keys) for v, keys in sorted(out.items())}

    def __str__(self) -> str:
        lines = [
            f"undo of run {self.run_id} of {self.pipeline}: {len(self.restores)} to restore, "
            f"{len(self.refused)} refused"
            + (f", {len(self.nothing_to_undo)} not written by the run" if self.nothing_to_undo else "")
        ]
        for run in self._runs():
            first, last = run[0], run[-1]
            counted = [r.rows for r in run]
            rows = f", {sum(n for n in counted if n is not None):,} rows" if None not in counted else ""
            removed = " (did not exist then: removed)" if first.rows == 0 else ""
            span = first.partition if len(run) == 1 else f"{first.partition} … {last.partition} ({len(run)} partitions)"
            lines.append(f"  restore {span} to version {first.version}{rows}{removed}")
            if first.overridden:
                lines.append(f"    forced: {first.overridden}")
        lines.extend(f"  refuse  {r.partition}: {r.reason}" for r in self.refused)
        lines.extend(f"  skip    {r.partition}: {r.reason}" for r in self.nothing_to_undo)
        return "\n".join(lines)

    def _runs(self) -> list[list[Restore]]:
        """Restores in runs of neighbours (no refused partition between them) alike in version and kind,
        so six months restored to two versions print as a few lines."""
        order = sorted([(r.partition, r) for r in self.restores] + [(r.partition, None) for r in self.refused])
        runs: list[list[Restore]] = []
        previous: Restore | None = None
        for _, r in order:
            if r is not None and previous is not None and runs and _alike(previous, r):
                runs[-1].append(r)
            elif r is not None:
                runs.append([r])
            previous = r
        return runs


def _alike(a: Restore, b: Restore) -> bool:
    return a.version == b.version and (a.rows == 0) == (b.rows == 0) and not a.overridden and not b.overridden


def resolve_run(given: str, runs: Mapping[str, datetime], pipeline: str) -> str:
    """The run id ``given`` names among the ledger's ``runs`` of ``pipeline`` (id → last event time): the
    exact id, or a prefix of at least :data:`MIN_PREFIX` characters that only one run starts with."""
    given = given.strip()
    if given in runs:
        return given
    recent = sorted(runs, key=lambda r: runs[r], reverse=True)[:3]
    hint = (
        "; its latest runs: " + ", ".join(f"{r} ({runs[r]:%Y-%m-%d %H:%M})" for r in recent)
        if recent
        else "; it has no runs recorded"
    )
    if len(given) < MIN_PREFIX:
        raise InvalidRequestError(
            f"run {given!r} is not a run of {pipeline}: give the full run id or at least {MIN_PREFIX} of its "
            f"first characters{hint}"
        )
    matches = sorted(r for r in runs if r.startswith(given))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidRequestError(
            f"run prefix {given!r} matches {len(matches)} runs of {pipeline} ({', '.join(matches[:5])}): "
            "give more characters"
        )
    raise InvalidRequestError(f"run {given!r} is not in the ledger of {pipeline}: check the run id{hint}")


def run_writes(events: Iterable[Mapping[str, object]], run_id: str) -> tuple[dict[str, RunWrite], dict[str, str]]:
    """Split the partitions ``run_id`` has events for into what it committed (key → :class:`RunWrite`) and
    what it did not (key → why not). ``events`` may hold other runs' events: they are ignored."""
    mine: dict[str, list[Mapping[str, object]]] = {}
    for e in events:
        if e["run_id"] == run_id:
            mine.setdefault(str(e["partition"]), []).append(e)
    writes: dict[str, RunWrite] = {}
    not_written: dict[str, str] = {}
    for key, rows in mine.items():
        rows = sorted(rows, key=lambda e: e["event_time"])  # type: ignore[arg-type,return-value]
        complete = [e for e in rows if e["status"] == Status.COMPLETE.value]
        committed = [e for e in complete if not e.get("cached") and e.get("table_version") is not None]
        if committed:
            first, last = committed[0], committed[-1]
            last_version = int(last["table_version"])  # type: ignore[call-overload]
            before = first.get("replaced_version")
            writes[key] = RunWrite(
                partition=key,
                commit_version=last_version,
                restore_version=int(before) if before is not None else int(first["table_version"]) - 1,  # type: ignore[call-overload]
                version=str(last["version"]),
                fingerprint=str(last["fingerprint"]),
                source_digest=last.get("source_digest"),  # type: ignore[arg-type]
                target_id=last.get("target_id"),  # type: ignore[arg-type]
            )
        elif served := [e for e in complete if e.get("cached")]:
            not_written[key] = (
                f"the run did not write it: served from a cache record{_origin(served[0])}, nothing to undo"
            )
        elif complete:
            not_written[key] = (
                "the run's commit version was not recorded (a catalog target, or an older release): "
                "it cannot be undone safely"
            )
        elif any(e["status"] == Status.FAILED.value for e in rows):
            error = next((str(e.get("error") or "") for e in reversed(rows) if e["status"] == Status.FAILED.value), "")
            not_written[key] = f"the run did not write it: it FAILED ({error}), so its old rows are still there"
        else:
            not_written[key] = "the run did not write it: it never completed (interrupted or not started)"
    return writes, not_written


def _origin(served: Mapping[str, object]) -> str:
    """Where a cached COMPLETE came from, to show: the run named by ``cached_from``; an event of a release
    before that column carries its origin in ``error``, shown as it was written."""
    if served.get("cached_from"):
        return f" (written by run {served['cached_from']})"
    return f" ({served['error']})" if served.get("error") else ""


def _touched(key: str, write: RunWrite, facts: LogFacts, state: PartitionState | None, run_id: str) -> str | None:
    """Why the partition changed after the run's commit, or None if it did not."""
    if facts.digest_at_commit is not None and facts.digest_at_commit == facts.digest_now:
        return None
    if facts.data_unchanged:
        return None  # only compacted since: the run's rows are what is there, in other files
    if facts.digest_at_commit is None:
        what = (
            f"version {write.commit_version} (the run's commit) can no longer be read, so later changes "
            "cannot be ruled out"
        )
    elif facts.later_commit is not None:
        version, operation = facts.later_commit
        what = f"changed after the run's commit (version {write.commit_version}) by version {version} ({operation})"
    else:
        what = f"changed after the run's commit (version {write.commit_version})"
    if (
        state is not None
        and state.run_id != run_id
        and state.status is Status.COMPLETE
        and not state.cached
        and (state.table_version or -1) > write.commit_version
    ):
        what += f"; the ledger: rewritten by run {state.run_id} at version {state.table_version}"
    return what


def plan_undo(
    pipeline: str,
    run_id: str,
    writes: Mapping[str, RunWrite],
    not_written: Mapping[str, str],
    facts: Mapping[str, LogFacts],
    current: Mapping[str, PartitionState],
    *,
    asked: Collection[str] | None = None,
    held: Mapping[str, str] | None = None,
    force: bool = False,
) -> UndoPlan:
    """Decide, for every partition ``asked`` (default: every partition the run has events for), whether
    to restore it (to which version) or refuse it (why). ``facts`` holds the log's facts of each written
    partition asked (see :class:`LogFacts`); ``current`` is the ledger's latest state per partition;
    ``held``: partitions a live backfill has claimed (key → who), never restored under its feet."""
    held = held or {}
    keys = sorted(set(writes) | set(not_written)) if asked is None else sorted(set(asked))
    restores: list[Restore] = []
    refused: list[Refusal] = []
    skipped: list[Refusal] = []
    for key in keys:
        write = writes.get(key)
        if write is None:
            why = Refusal(key, not_written.get(key, "the run did not write it: it never claimed it"))
            # Named by the caller: say it cannot be done. Part of "the whole run": nothing to do for it.
            (refused if asked is not None else skipped).append(why)
            continue
        state = current.get(key)
        if state is not None and state.status is Status.UNDONE and state.undone_run == run_id:
            refused.append(Refusal(key, f"already undone (undo commit version {state.table_version})"))
            continue
        if key in held:
            refused.append(Refusal(key, f"claimed by a live backfill ({held[key]}): undo it when that run ends"))
            continue
        fact = facts[key]
        if write.target_id and fact.table_id_now and fact.table_id_now != write.target_id:
            refused.append(Refusal(key, "the target table was recreated since the run: its versions are not the run's"))
            continue
        if not fact.restore_readable:
            refused.append(
                Refusal(
                    key,
                    f"version {write.restore_version} (before the run) is no longer in the table's log "
                    "(log retention): it cannot be restored",
                )
            )
            continue
        if fact.files_missing:
            refused.append(
                Refusal(
                    key,
                    f"the files of version {write.restore_version} (before the run) were vacuumed "
                    f"({fact.files_missing} of {fact.files_total} gone from storage): it cannot be restored",
                )
            )
            continue
        touched = _touched(key, write, fact, state, run_id)
        if touched is not None and not force:
            refused.append(
                Refusal(key, f"{touched}: restoring would discard that; --force restores it anyway", forceable=True)
            )
            continue
        restores.append(Restore(key, write.restore_version, write.commit_version, fact.rows_at_restore, touched))
    return UndoPlan(pipeline, run_id, tuple(restores), tuple(refused), force, tuple(skipped))
