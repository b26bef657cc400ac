"""Execute by size, record by partition: how partitions are packed into chunks (pure), and how a chunk
isolates its failures (bisection, named culprits, retries) while recording every partition on its own.

The chunk logic runs here against a fake engine and a real ledger (delta-rs); the same paths on real
Spark + Delta are in tests/integration/test_chunks.py."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

import pytest

from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.chunking import Chunk, make_chunks, split_stretches
from prefect_backfill.engine import ChunkOutcome
from prefect_backfill.errors import ChunkFailedError, EmptyOutputError
from prefect_backfill.executing import ChunkExecutor as _Chunk
from prefect_backfill.executing import backoff_delay
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Grain, Partition, partitions_between
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.results import ChunkResult, PartitionResult
from prefect_backfill.settings import BackfillSettings

DAYS = partitions_between("2024-01-01", "2024-01-30", Grain.DAY)
MB = 1024 * 1024


def keys(chunks: Sequence[Chunk]) -> list[list[str]]:
    return [c.keys for c in chunks]


def test_chunks_spread_over_the_slots_and_respect_count_and_byte_caps() -> None:
    sizes = {p.key: MB for p in DAYS}
    two = make_chunks(DAYS, sizes, budget_bytes=256 * MB, max_partitions=400, concurrency=2)
    assert [len(c) for c in two] == [15, 15] and two[0].size_bytes == 15 * MB  # both slots get work
    by_count = make_chunks(DAYS, sizes, budget_bytes=256 * MB, max_partitions=7, concurrency=1)
    assert [len(c) for c in by_count] == [7, 7, 7, 7, 2]
    by_bytes = make_chunks(DAYS, sizes, budget_bytes=10 * MB, max_partitions=400, concurrency=1)
    assert [len(c) for c in by_bytes] == [10, 10, 10]
    one_each = make_chunks(DAYS, sizes, budget_bytes=256 * MB, max_partitions=1, concurrency=2)
    assert keys(one_each) == [[p.key] for p in DAYS]  # the documented way to force one partition per job


def test_small_work_is_not_split_over_the_slots() -> None:
    """Two shares of a few megabytes buy no parallelism, only a second job and commit."""
    sizes = {p.key: 100 * 1024 for p in DAYS}  # 3 MB in all, like the demo's 5 MB
    alone = make_chunks(DAYS, sizes, budget_bytes=256 * MB, max_partitions=400, concurrency=2, min_share_bytes=32 * MB)
    assert [len(c) for c in alone] == [30]
    big = {p.key: 4 * MB for p in DAYS}  # 120 MB: three shares of 32 MB, so both slots get work
    spread = make_chunks(DAYS, big, budget_bytes=256 * MB, max_partitions=400, concurrency=2, min_share_bytes=32 * MB)
    assert [len(c) for c in spread] == [15, 15]
    assert BackfillSettings.model_fields["chunk_min_share_mb"].default == 32  # runs use it; tests set 0


def test_slightly_uneven_partitions_still_make_one_chunk_per_slot() -> None:
    sizes = {p.key: 1000 + (i * 7) % 13 for i, p in enumerate(DAYS[:8])}
    chunks = make_chunks(DAYS[:8], sizes, budget_bytes=256 * MB, max_partitions=400, concurrency=2)
    assert [len(c) for c in chunks] == [4, 4]


def test_a_partition_at_or_over_the_budget_runs_alone() -> None:
    sizes = {p.key: MB for p in DAYS[:6]} | {DAYS[2].key: 10 * 1024 * MB}  # one 10 GB day
    chunks = make_chunks(DAYS[:6], sizes, budget_bytes=256 * MB, max_partitions=400, concurrency=1)
    assert keys(chunks) == [["2024-01-01", "2024-01-02"], ["2024-01-03"], ["2024-01-04", "2024-01-05", "2024-01-06"]]


def test_partitions_not_to_run_split_the_chunks_and_order_follows_the_plan() -> None:
    to_run = [p for p in DAYS[:10] if p.key not in ("2024-01-04", "2024-01-05")]  # complete: never rewritten
    chunks = make_chunks(to_run, None, budget_bytes=256 * MB, max_partitions=400, concurrency=1)
    assert [c.span for c in chunks] == ["2024-01-01..2024-01-03", "2024-01-06..2024-01-10"]
    newest = make_chunks(to_run, None, budget_bytes=256 * MB, max_partitions=400, concurrency=1, newest_first=True)
    assert [c.span for c in newest] == ["2024-01-06..2024-01-10", "2024-01-01..2024-01-03"]
    assert make_chunks([], None, budget_bytes=1, max_partitions=1) == []
    hours = [Partition(datetime(2024, 1, 1, h), Grain.HOUR) for h in (22, 23)] + [
        Partition(datetime(2024, 1, 2, 0), Grain.HOUR)
    ]
    assert len(split_stretches(hours)) == 1  # consecutive across midnight
    months = partitions_between("2023-11", "2024-02", Grain.MONTH)
    assert len(split_stretches(months)) == 1 and len(split_stretches([months[0], months[2]])) == 2


# -- a chunk isolates its failures -----------------------------------------------------------------


class FakeEngine:
    """Fails any chunk containing a poison partition: with a generic error (culprit unknown), or with a
    check that names it; counts the jobs it was asked to run."""

    def __init__(self, poison: set[str], named: bool = False, flaky: int = 0) -> None:
        self.poison, self.named, self.flaky = poison, named, flaky
        self.jobs: list[list[str]] = []

    def process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None = None,
        source_bytes: int | None = None,
    ) -> ChunkOutcome:
        keys = [p.key for p in partitions]
        self.jobs.append(keys)
        if self.flaky:
            self.flaky -= 1
            raise OSError("connection reset")
        bad = sorted(self.poison & set(keys))
        if bad and self.named:
            raise EmptyOutputError(f"no rows for {bad}", partitions=tuple(bad))
        if bad:
            raise RuntimeError(f"[SPARK] task failed: poison row in {bad[0]}")
        return ChunkOutcome(table_version=7, rows={k: (10, 9) for k in keys})


def keep(df):  # type: ignore[no-untyped-def]
    return df


def unit(tmp_path: Path, engine: FakeEngine, retries: int = 2, cache: PartitionCache | None = None) -> _Chunk:
    spec = Pipeline("chunks", str(tmp_path / "b"), str(tmp_path / "s" / "t"), "d", keep, "1")
    return _Chunk(
        spec=spec,
        fingerprint=spec.fingerprint,
        ledger=Ledger(tmp_path / "ledger"),
        run_id="run-1",
        engine=engine,  # type: ignore[arg-type]
        target_id="t1",
        digests={p.key: f"d-{p.key}" for p in DAYS},
        cache=cache,
        retries=retries,
        delay=0.0,
        deadline=None,
        sleep=lambda s: None,
    )


def test_one_poison_partition_in_thirty_fails_alone_and_the_other_29_complete(tmp_path: Path) -> None:
    engine = FakeEngine({"2024-01-17"})
    chunk = unit(tmp_path, engine, cache=PartitionCache(str(tmp_path / "cache")))
    chunk.run([p.key for p in DAYS], retries=2)
    chunk.ledger.flush()
    assert len(chunk.completed) == 29 and [k for k, _ in chunk.failed] == ["2024-01-17"]
    assert "RuntimeError: [SPARK] task failed: poison row in 2024-01-17" in chunk.failed[0][1]
    assert len(engine.jobs) <= 3 + 2 * 5 + 3  # whole chunk 3×, then halves without retries, the poison alone 3×
    current = chunk.ledger.current("chunks")
    assert current["2024-01-17"].status is Status.FAILED and current["2024-01-17"].attempt == 3
    done = {k: s for k, s in current.items() if s.status is Status.COMPLETE}
    assert len(done) == 29 and {s.rows_out for s in done.values()} == {9}
    assert {s.source_digest for s in done.values()} == {f"d-{k}" for k in done} and len(set(done)) == 29
    # every completed partition has its own cache record, whatever chunk it ran in
    record = PartitionCache(str(tmp_path / "cache")).get(
        cache_key("chunks", "2024-01-03", chunk.fingerprint, "t1", "d-2024-01-03")
    )
    assert record is not None and record.rows_out == 9 and record.table_version == 7


def test_a_check_that_names_its_partitions_fails_exactly_those_without_bisection(tmp_path: Path) -> None:
    engine = FakeEngine({"2024-01-05", "2024-01-06"}, named=True)
    chunk = unit(tmp_path, engine)
    chunk.run([p.key for p in DAYS[:10]], retries=2)
    assert sorted(k for k, _ in chunk.failed) == ["2024-01-05", "2024-01-06"]
    assert len(chunk.completed) == 8
    assert (
        engine.jobs
        == [  # the chunk once (not retried: a check), then the rest around the culprits
            [p.key for p in DAYS[:10]],
            ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
            ["2024-01-07", "2024-01-08", "2024-01-09", "2024-01-10"],
        ]
    )


def test_a_transient_error_retries_the_whole_chunk_first(tmp_path: Path) -> None:
    engine = FakeEngine(set(), flaky=2)
    chunk = unit(tmp_path, engine)
    chunk.run([p.key for p in DAYS[:10]], retries=2)
    assert len(chunk.completed) == 10 and not chunk.failed and len(engine.jobs) == 3
    assert all(len(job) == 10 for job in engine.jobs)
    assert 1.0 <= backoff_delay(1.0, 1) <= 1.5 and 4.0 <= backoff_delay(1.0, 3) <= 6.0


def test_chunk_results_travel_between_processes() -> None:
    done = PartitionResult("p", "a", "1:x", 1, 1, 3, 0.1, 0.01, "r", "d", "t")
    error = ChunkFailedError(ChunkResult((done,), (("b", "boom"),), ("c",)))
    again = pickle.loads(pickle.dumps(error))
    assert again.result == error.result and "b: boom" in str(again)
    named = pickle.loads(pickle.dumps(EmptyOutputError("x", partitions=("a",))))
    assert named.partitions == ("a",)
    assert pickle.loads(pickle.dumps(PartitionCache("/tmp/x"))).storage == "/tmp/x"


def test_cache_keys_depend_on_exactly_the_partitions_identity() -> None:
    base = cache_key("p", "2024-01-01", "2:abc", "t1", "s1")
    assert base.startswith("backfill-p-2024-01-01-") and base == cache_key("p", "2024-01-01", "2:abc", "t1", "s1")
    changed = {
        cache_key("p", "2024-01-02", "2:abc", "t1", "s1"),
        cache_key("p", "2024-01-01", "3:abc", "t1", "s1"),
        cache_key("p", "2024-01-01", "2:abc", "t2", "s1"),  # a recreated target misses
        cache_key("p", "2024-01-01", "2:abc", "t1", "s2"),  # changed source data misses
    }
    assert len(changed | {base}) == 5


@pytest.mark.parametrize(
    ("parts", "predicate"),
    [
        (DAYS[:1], "`d` = DATE '2024-01-01'"),
        (DAYS[:3], "`d` >= DATE '2024-01-01' AND `d` <= DATE '2024-01-03'"),
        ([DAYS[0], DAYS[2]], "`d` IN (DATE '2024-01-01', DATE '2024-01-03')"),
        (
            [Partition(datetime(2024, 1, 1, h), Grain.HOUR) for h in (5, 6)],
            "`d` >= TIMESTAMP '2024-01-01 05:00:00' AND `d` <= TIMESTAMP '2024-01-01 06:00:00'",
        ),
        (partitions_between("2024-01", "2024-02", Grain.MONTH), "`d` IN (DATE '2024-01-01', DATE '2024-02-01')"),
    ],
)
def test_chunk_predicates_are_typed_ranges_or_in_lists(parts: list[Partition], predicate: str) -> None:
    from prefect_backfill.engine.predicates import chunk_predicate

    assert chunk_predicate("d", parts) == predicate
    assert date(2024, 1, 1) == DAYS[0].value


class JobCancelled(RuntimeError):
    """Like pyspark's captured error of a cancelled job: its condition says so."""

    def getCondition(self) -> str:
        return "SPARK_JOB_CANCELLED"


def test_a_cancelled_spark_job_goes_back_to_pending_without_retries(tmp_path: Path) -> None:
    class Cancelled(FakeEngine):
        def process_chunk(
            self,
            pipeline: Pipeline,
            partitions: Sequence[Partition],
            commit_tag: str,
            rows_in: Mapping[str, int] | None = None,
            source_bytes: int | None = None,
        ) -> ChunkOutcome:
            self.jobs.append([p.key for p in partitions])
            raise JobCancelled("[SPARK_JOB_CANCELLED] Job 7 cancelled part of cancelled job tags backfill:x")

    engine = Cancelled(set())
    chunk = unit(tmp_path, engine)
    chunk.run([p.key for p in DAYS[:4]], retries=2)
    chunk.ledger.flush()
    assert len(engine.jobs) == 1 and chunk.not_started == [p.key for p in DAYS[:4]] and not chunk.failed
    assert {s.status for s in chunk.ledger.current("chunks").values()} == {Status.PENDING}


def test_a_dead_spark_driver_fails_the_chunk_at_once_without_retries_or_bisection(tmp_path: Path) -> None:
    class Dead(FakeEngine):
        def process_chunk(
            self,
            pipeline: Pipeline,
            partitions: Sequence[Partition],
            commit_tag: str,
            rows_in: Mapping[str, int] | None = None,
            source_bytes: int | None = None,
        ) -> ChunkOutcome:
            self.jobs.append([p.key for p in partitions])
            raise ConnectionRefusedError("[Errno 111] Connection refused")

    engine = Dead(set())
    chunk = unit(tmp_path, engine)
    chunk.run([p.key for p in DAYS[:8]], retries=2)
    assert len(engine.jobs) == 1 and len(chunk.failed) == 8 and "Connection refused" in chunk.failed[0][1]
    assert "Spark driver is gone" in chunk.failed[0][1] and "--chunk-mb" in chunk.failed[0][1]  # what to do


def test_rows_in_from_the_plan_reach_the_engine_only_when_known_for_the_whole_chunk(tmp_path: Path) -> None:
    seen: list[Mapping[str, int] | None] = []

    class Recording(FakeEngine):
        def process_chunk(
            self,
            pipeline: Pipeline,
            partitions: Sequence[Partition],
            commit_tag: str,
            rows_in: Mapping[str, int] | None = None,
            source_bytes: int | None = None,
        ) -> ChunkOutcome:
            seen.append(rows_in)
            return super().process_chunk(pipeline, partitions, commit_tag, rows_in)

    engine = Recording(set())
    chunk = unit(tmp_path, engine)
    chunk.source_rows = {p.key: 10 for p in DAYS[:3]}
    chunk.run([p.key for p in DAYS[:3]], retries=0)
    chunk.run([p.key for p in DAYS[2:5]], retries=0)  # two of three unknown: the engine reads the log itself
    assert seen == [{p.key: 10 for p in DAYS[:3]}, None]


def test_the_commit_version_is_read_from_the_commit_files_not_guessed(tmp_path: Path) -> None:
    import json

    from prefect_backfill.engine.commits import find_commit

    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    for version, tag in [(5, "a"), (6, "mine"), (7, "b")]:  # another chunk committed after ours
        (log / f"{version:020d}.json").write_text(json.dumps({"commitInfo": {"userMetadata": tag}}) + "\n")
    assert find_commit(str(tmp_path / "t"), "mine", latest=7) == 6
    assert find_commit(str(tmp_path / "t"), "nobody", latest=7) is None


def test_a_chunk_is_shrunk_to_what_fits_before_the_window_closes() -> None:
    from prefect_backfill.window import partitions_that_fit

    history = [2.0, 2.0, 3.0, 50.0]  # median 2.5 s per partition: one slow outlier does not decide
    assert partitions_that_fit(30, None, history) == 30  # no window
    assert partitions_that_fit(30, 1000.0, history) == 30  # plenty of time
    assert partitions_that_fit(30, 26.0, history) == 10  # 26 s / 2.5 s
    assert partitions_that_fit(30, 2.0, history) == 0  # not even one: the chunk is not started
    assert partitions_that_fit(30, 0.0, history) == 0 and partitions_that_fit(30, -5.0, []) == 0  # closed
    assert partitions_that_fit(30, 26.0, []) == 30  # no history: start it (the hard stop bounds it)


def test_downstream_marks_are_written_before_the_commits_partitions_are_complete(tmp_path: Path) -> None:
    """A kill between the two (here: recording COMPLETE raises) leaves the downstream marked and the
    upstream partitions not complete: the rerun writes them again, nothing is complete with its downstream
    unmarked."""
    from prefect_backfill.cascade import Upstream
    from prefect_backfill.ledger import LedgerEvent
    from prefect_backfill.registry import register

    keys = [p.key for p in DAYS[:3]]
    down = register(
        Pipeline(
            "mk_down",
            str(tmp_path / "s" / "t"),
            str(tmp_path / "g" / "t"),
            "d",
            keep,
            "1",
            upstream=(Upstream("chunks"),),
        ),
        replace=True,
    )
    down_ledger = Ledger(tmp_path / "g" / "_backfill_progress")
    down_ledger.record([LedgerEvent("r0", "mk_down", k, Status.COMPLETE, "1", down.fingerprint) for k in keys])
    chunk = unit(tmp_path, FakeEngine(set()), retries=0)
    register(chunk.spec, replace=True)
    recorded = chunk.ledger.record

    def killed_at_complete(events: Sequence[LedgerEvent], *, wait: bool = True) -> None:
        if any(e.status is Status.COMPLETE for e in events):
            raise KeyboardInterrupt("killed")
        recorded(events, wait=wait)

    chunk.ledger.record = killed_at_complete  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        chunk.run(keys, retries=0)
    chunk.ledger.flush()
    assert {k: s.status for k, s in down_ledger.current("mk_down").items()} == dict.fromkeys(keys, Status.STALE)
    assert all(s.status is not Status.COMPLETE for s in chunk.ledger.current("chunks").values())


def test_a_mark_made_while_the_chunk_computed_stays_the_latest_word(tmp_path: Path) -> None:
    """An upstream run rewrote what this chunk may have read before the change: after the commit the
    partition is still STALE (due), not COMPLETE."""
    from prefect_backfill.cascade import Upstream, mark_record
    from prefect_backfill.ledger import LedgerEvent
    from prefect_backfill.registry import register

    register(Pipeline("mk_up2", str(tmp_path / "a"), str(tmp_path / "b"), "d", keep, "1"), replace=True)
    keys = [p.key for p in DAYS[:2]]

    class UpstreamMeanwhile(FakeEngine):
        def process_chunk(
            self, pipeline: Pipeline, partitions: Sequence[Partition], *a: object, **k: object
        ) -> ChunkOutcome:
            marks = [
                LedgerEvent(
                    "up-run",
                    pipeline.name,
                    keys[0],
                    Status.STALE,
                    "1",
                    "1:x",
                    upstream=mark_record("mk_up2", partitions[:1]),
                )
            ]
            chunk.ledger.record(marks)  # what mk_up2's commit does while this chunk computes
            return super().process_chunk(pipeline, partitions, "tag")

    chunk = unit(tmp_path, UpstreamMeanwhile(set()))
    chunk.spec = Pipeline(
        "chunks", str(tmp_path / "b"), str(tmp_path / "s" / "t"), "d", keep, "1", upstream=(Upstream("mk_up2"),)
    )
    chunk.run(keys, retries=0)
    chunk.ledger.flush()
    current = chunk.ledger.current("chunks")
    assert current[keys[0]].status is Status.STALE and current[keys[0]].run_id == "up-run"
    assert current[keys[1]].status is Status.COMPLETE
