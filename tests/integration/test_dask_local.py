"""A local Dask cluster chosen by settings: worker processes report to the flow's own Prefect API
(here the test server, which lives only in this process's settings, not in the environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.backfill import backfill
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from prefect_backfill.runners import BackfillDaskTaskRunner, task_runner
from prefect_backfill.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]


def test_local_dask_cluster_runs_partitions_in_worker_processes(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    assert "PREFECT_API_URL" not in os.environ
    for key, value in {
        "BACKFILL_TASK_RUNNER": "dask",
        "BACKFILL_DASK_WORKERS": "2",
        "BACKFILL_ENGINE": "prefect_backfill.testing:SleepEngine",
        "BENCH_PARTITION_SECONDS": "0.2",
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.testing.pipelines",
        "BACKFILL_DATA_DIR": str(tmp_path),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp_path / "results"),
        "PYTHONPATH": str(ROOT),
        "BENCH_TOUCH_DIR": str(tmp_path / "pids"),
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "pids").mkdir()
    runner = task_runner(get_settings())
    assert isinstance(runner, BackfillDaskTaskRunner)
    out = backfill.with_options(task_runner=runner)(
        pipeline="bench_noop_day", start="2024-03-01", end="2024-03-06", max_concurrency=4
    ).to_dict()
    assert isinstance(out, dict), out
    assert len(out["completed"]) == 6 and not out["failed"]
    assert "PREFECT_API_URL" not in os.environ  # exported for the workers only while they started
    ledger = Ledger(tmp_path / "noop" / "_backfill_progress")
    current = ledger.current("bench_noop_day")
    assert len(current) == 6 and {s.status for s in current.values()} == {Status.COMPLETE}
    # The partitions ran in Dask worker processes, not in this one...
    pids = {int(p.name) for p in (tmp_path / "pids").iterdir()}
    assert pids and os.getpid() not in pids
    # ...and their task runs (one per chunk: 6 partitions over 4 slots make 3 chunks of 2) were reported
    # to this flow's API.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="partitions-2024-03-0"))
        )
    done = {r.name for r in runs if r.state is not None and r.state.is_completed()}
    assert done >= {f"partitions-2024-03-0{d}..2024-03-0{d + 1}" for d in (1, 3, 5)}
