"""Values that come out of a run: one partition's result, and the run's summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BackfillSummary", "ChunkResult", "PartitionResult"]


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """One completed partition (inside its chunk); persisted as its cache record."""

    pipeline: str
    partition: str
    fingerprint: str
    rows_in: int
    rows_out: int
    table_version: int | None
    duration_s: float
    bookkeeping_s: float
    run_id: str
    source_digest: str | None = None
    target_id: str | None = None
    # The partition's target files right after the commit (None: unknown). Records written by older
    # releases unpickle without it: read it with getattr(record, "target_digest", None).
    target_digest: str | None = None


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a chunk task did with each of its partitions: completed (with their results), failed (with
    their own errors), not started (the window closed)."""

    completed: tuple[PartitionResult, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    not_started: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackfillSummary:
    pipeline: str
    run_id: str
    start: str
    end: str
    fingerprint: str
    total: int
    skipped: int
    completed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    not_started: tuple[str, ...] = ()
    held: tuple[str, ...] = ()  # left to another live run
    rows_written: int = 0
    duration_s: float = 0.0
    bookkeeping_s: tuple[float, ...] = field(default=(), repr=False)
    gate: str | None = None  # why the run stopped at the canary gate
    stopped: str | None = None  # what stopped the run (SIGINT, SIGTERM, Crashed on the server), if anything did
    stop_code: int | None = None  # the exit code that stop means (130, 143; 1 for a server-side end)

    @property
    def ok(self) -> bool:
        """Everything planned is complete: nothing failed, nothing left to a window, a gate, a signal or
        another run."""
        return not self.failed and not self.not_started and not self.held and self.gate is None and self.stopped is None

    def to_dict(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out["failed"] = [{"partition": k, "error": e} for k, e in self.failed]
        out["bookkeeping_s"] = list(self.bookkeeping_s)
        out["ok"] = self.ok
        return out

    def __str__(self) -> str:
        lines = [
            f"{self.pipeline} {self.start}..{self.end}: {len(self.completed)} completed, {len(self.cached)} cached, "
            f"{self.skipped} skipped, {len(self.failed)} failed"
            + (f", {len(self.not_started)} not started" if self.not_started else "")
            + (f", {len(self.held)} left to another live run" if self.held else "")
            + f" of {self.total}; {self.rows_written:,} rows written in {self.duration_s:.1f}s"
            + (f"; stopped by {self.stopped}" if self.stopped else "")
        ]
        lines.extend(f"  FAILED {key}: {error}" for key, error in self.failed[:20])
        if len(self.failed) > 20:
            lines.append(f"  … and {len(self.failed) - 20} more failed partitions")
        return "\n".join(lines)
