"""What a backfill shows in the Prefect UI while it runs and when it ends.

- a progress artifact (N of M, %, failures, ETA), updated by a reporter thread at most every few
  seconds: fast partitions never cost an API call each;
- at the end, a table artifact (one row per partition of the range) and a calendar artifact.

Artifact keys name the pipeline (``backfill-<pipeline>-progress`` …), so successive runs line up
in the UI's Artifacts page.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
from collections.abc import Mapping, Sequence
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from prefect_backfill.calendar import Cell, build_grid, cell_of, render_markdown
from prefect_backfill.eta import estimate
from prefect_backfill.partitions import Partition
from prefect_backfill.planning import PartitionState

__all__ = ["ProgressReporter", "artifact_key", "publish_final_artifacts"]


def artifact_key(pipeline: str, what: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"backfill-{pipeline}-{what}".lower()).strip("-")


class ProgressReporter:
    """Counts finished partitions (called from task threads) and pushes the progress artifact from
    its own thread, only when something changed and at most every ``interval`` seconds."""

    def __init__(
        self,
        pipeline: str,
        total: int,
        concurrency: int,
        history: Sequence[float] = (),
        skipped: int = 0,
        interval: float = 3.0,
    ) -> None:
        self.pipeline, self.total, self.concurrency, self.skipped = pipeline, total, concurrency, skipped
        self.history = list(history)
        self.interval = interval
        self._lock = threading.Lock()
        self._done = self._failed = 0
        self._durations: list[float] = []
        self._pushed = -1
        self._stop = threading.Event()
        self.updates = 0
        self.artifact_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            0.0, key=artifact_key(pipeline, "progress"), description=self.describe()
        )
        # The thread runs in a copy of the flow's context, so it talks to the same Prefect API.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="backfill-progress", daemon=True)
        self._thread.start()

    def partitions_finished(self, count: int, failed: int, duration_s: float | None) -> None:
        """``count`` partitions (one chunk) finished, ``failed`` of them failed; ``duration_s`` is the
        time per partition."""
        with self._lock:
            self._done += count
            self._failed += failed
            if failed < count and duration_s is not None:
                self._durations.append(duration_s)

    def describe(self) -> str:
        with self._lock:
            done, failed, durations = self._done, self._failed, list(self._durations)
        pct = 100.0 * done / self.total if self.total else 100.0
        eta = estimate(self.total - done, durations, self.concurrency, self.history)
        parts = [f"{self.pipeline}: {done} of {self.total} partitions ({pct:.0f}%)"]
        if failed:
            parts.append(f"{failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(str(eta))
        return " · ".join(parts)

    def _push(self) -> None:
        with self._lock:
            done = self._done
        if done == self._pushed:
            return
        progress = 100.0 * done / self.total if self.total else 100.0
        update_progress_artifact(self.artifact_id, progress, description=self.describe())
        self._pushed = done
        self.updates += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a UI update must never fail the backfill
                self._push()

    def close(self, done: int, failed: int) -> None:
        """Stop the thread and push the final counts (from the collected states: a done-callback
        may still be on its way when the flow has already seen every state)."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._done, self._failed = done, failed
        self._push()


def publish_final_artifacts(
    pipeline: str,
    fingerprint: str,
    partitions: Sequence[Partition],
    states: Mapping[str, PartitionState],
    table_limit: int = 2_000,
) -> None:
    """The partition table and the calendar of the whole range, as the ledger has it now.

    The table keeps at most ``table_limit`` rows (a UI table of 43,800 hours helps nobody): partitions
    that need attention (failed, running, pending, never run, stale) first, then the rest in order.
    """
    rows = []
    shown: Sequence[Partition] = partitions
    if len(partitions) > table_limit:
        complete = {p.key for p in partitions if cell_of(states.get(p.key), fingerprint) is Cell.COMPLETE}
        attention = [p.key for p in partitions if p.key not in complete][:table_limit]
        rest = [p.key for p in partitions if p.key in complete][: table_limit - len(attention)]
        keep = set(attention) | set(rest)
        shown = [p for p in partitions if p.key in keep]
    for part in shown:
        s = states.get(part.key)
        rows.append(
            {
                "partition": part.key,
                "status": s.status.value if s else "NEVER RUN",
                "attempt": s.attempt if s else None,
                "rows_in": s.rows_in if s else None,
                "rows_out": s.rows_out if s else None,
                "duration_s": round(s.duration_s, 2) if s and s.duration_s is not None else None,
                "version": s.version if s else None,
                "error": s.error if s and s.status.value == "FAILED" else None,
                "check": s.check_name if s and s.status.value == "FAILED" else None,
            }
        )
    what = f"{len(rows)} partitions" if len(rows) == len(partitions) else f"{len(rows)} of {len(partitions)} partitions"
    create_table_artifact(rows, key=artifact_key(pipeline, "partitions"), description=f"{pipeline}: status of {what}")
    grid = build_grid(partitions, states, fingerprint)
    create_markdown_artifact(
        render_markdown(grid, f"{pipeline} ({partitions[0].key} … {partitions[-1].key})") if partitions else "",
        key=artifact_key(pipeline, "calendar"),
        description=f"{pipeline}: calendar of partition status",
    )


def publish_diff_artifact(pipeline: str, run_id: str, events: Sequence[Mapping[str, object]]) -> int:
    """What this run changed, per partition and in total (rows, column sums, keys): the artifact an
    operator reads before trusting a backfill. Returns how many partitions it shows (0: none published)."""
    from prefect_backfill.diff import diff_markdown, run_diffs

    diffs = run_diffs(events, run_id)
    if diffs:
        create_markdown_artifact(
            diff_markdown(f"{pipeline}: what run {run_id[:8]} changed", diffs),
            key=artifact_key(pipeline, "diff"),
            description=f"{pipeline}: before/after diff of {len(diffs)} partition(s)",
        )
    return len(diffs)
