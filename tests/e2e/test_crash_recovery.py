"""``kill -9`` of ``backfill run`` on the default path (the CLI with Prefect's embedded server), then the
same plain command again: it must finish everything, in time, with the current data.

Each trial rewrites bronze with new content, SIGKILLs the CLI's whole process group (CLI, embedded
server, Spark JVM) at a seeded random point of one phase (start-up, mid-partition, between partitions,
in a ledger commit), reruns, and checks: exit 0, nothing "held by another live run", every partition's
latest ledger state COMPLETE and written after the change, silver equal row for row to the transform of
the current bronze. Trials share one lake, so each starts from what the previous crash left behind.
Harness and phase detection: ``tests/e2e/crash_harness.py``; a longer matrix: ``bench/crash_matrix.py``.

``CRASH_SEED`` picks other kill points (the default is fixed, so a failure reproduces).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.e2e.crash_harness import (
    PHASES,
    CrashLake,
    Trial,
    draw_kill_point,
    plan_trials,
    run_slot_leak,
    run_trial,
    stop_all,
)

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CRASH_SEED", "20261126"))
DAYS, SLEEP_S = 6, 0.5
# One trial per phase (CI's 30 minutes); bench/crash_matrix.py draws many more (docs/benchmarks.md).
TRIALS = plan_trials(SEED, 4, DAYS)


@pytest.fixture(scope="module")
def crash_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashLake]:
    try:
        yield CrashLake(tmp_path_factory.mktemp("crash"), days=DAYS, sleep_s=SLEEP_S)
    finally:
        stop_all()  # a CLI left running by an interrupted test (each runs in its own session)


def test_the_trials_cover_every_phase_and_are_reproducible() -> None:
    assert {t.phase for t in TRIALS} == set(PHASES)
    assert plan_trials(SEED, 4, DAYS) == TRIALS
    assert all(a.rows_per_day != b.rows_per_day for a, b in itertools.pairwise(TRIALS))


@pytest.mark.parametrize("trial", TRIALS, ids=[t.describe() for t in TRIALS])
def test_a_plain_rerun_after_kill_9_completes_the_current_data(crash_lake: CrashLake, trial: Trial) -> None:
    result = run_trial(crash_lake, trial)
    report = f"{result.report()}\n  logs in {_logs(crash_lake)}"
    print(report)
    assert result.ok, report


def test_two_kills_in_a_row_leak_no_slot_and_the_next_run_completes(crash_lake: CrashLake) -> None:
    result = run_slot_leak(crash_lake, SEED)
    report = f"{result.report()}\n  logs in {_logs(crash_lake)}"
    print(report)
    assert result.ok, report


def test_a_clustered_target_after_kill_9_mid_chunk(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same on a liquid-clustered target, whose chunks commit one at a time: a kill while a chunk
    computes or holds the table's commit turn leaves nothing half-written, and the rerun completes."""
    lake = CrashLake(tmp_path_factory.mktemp("crash-clustered"), days=DAYS, sleep_s=SLEEP_S, cluster_by="order_date")
    point = draw_kill_point(random.Random(SEED), "mid-partition", DAYS, lake.max_concurrency)
    try:
        result = run_trial(lake, Trial(0, point, salt=SEED % 1000 * 1000 + 77, rows_per_day=17))
    finally:
        stop_all()
    report = f"{result.report()}\n  logs in {_logs(lake)}"
    print(report)
    assert result.ok, report
    assert "clustering" in (DeltaTable(lake.silver).protocol().writer_features or [])
    assert DeltaTable(lake.silver).metadata().partition_columns == []


def _logs(lake: CrashLake) -> Path:
    return lake.root / "logs"
