"""How far a backfill is and when it will end: pure arithmetic over observed durations.

The estimate counts *waves*: with ``concurrency`` partitions in flight, ``remaining`` partitions take
``ceil(remaining / concurrency)`` partition-durations. Before the run has finished a partition, the
ledger's history of earlier runs stands in, so the very first progress report already has an ETA.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Eta", "estimate", "format_duration", "wave_estimate"]


@dataclass(frozen=True, slots=True)
class Eta:
    remaining: int
    seconds: float | None
    basis: str  # "this run (n partitions)", "history (n partitions)" or "no history yet"

    def __str__(self) -> str:
        if self.remaining == 0:
            return "done"
        if self.seconds is None:
            return f"{self.remaining} left, ETA unknown ({self.basis})"
        return f"{self.remaining} left, ETA {format_duration(self.seconds)} ({self.basis})"


def estimate(remaining: int, durations: Sequence[float], concurrency: int, history: Sequence[float] = ()) -> Eta:
    """ETA of ``remaining`` partitions from this run's ``durations`` (or else ``history``)."""
    if remaining <= 0:
        return Eta(0, 0.0, "complete")
    samples, basis = (durations, "this run") if durations else (history, "history")
    if not samples:
        return Eta(remaining, None, "no history yet")
    per_partition = statistics.median(samples)
    waves = math.ceil(remaining / max(1, concurrency))
    return Eta(remaining, waves * per_partition, f"{basis}, median {per_partition:.1f}s per partition")


def wave_estimate(chunk_sizes: Sequence[int], concurrency: int, per_partition: float | None) -> float | None:
    """Seconds for chunks of ``chunk_sizes`` partitions run ``concurrency`` at a time, each partition
    taking ``per_partition`` (None: no history, no estimate): each wave lasts as long as its longest chunk."""
    if per_partition is None:
        return None
    waves = [chunk_sizes[i : i + concurrency] for i in range(0, len(chunk_sizes), concurrency)]
    return sum(max(per_partition * size for size in wave) for wave in waves)


def format_duration(seconds: float) -> str:
    """``42s``, ``7m 05s``, ``3h 12m``: precise enough to plan a night by."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
