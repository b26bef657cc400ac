"""Pure parts of scale-out: request shapes, batching, batch cache keys, runner and engine choice,
per-partition retries inside a batch."""

from __future__ import annotations

import pickle
import re
from datetime import datetime

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_backfill.caching import BatchCachePolicy
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import (
    BatchFailedError,
    ConfigurationError,
    InvalidRequestError,
    PartitionValidationError,
)
from prefect_backfill.orchestrate import batches
from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.request import BackfillRequest
from prefect_backfill.results import BatchResult, PartitionResult
from prefect_backfill.runners import BackfillDaskTaskRunner, task_runner
from prefect_backfill.settings import BackfillSettings, get_settings
from tasks.partition import _with_retries


def hours(n: int) -> list[Partition]:
    return [Partition(datetime(2024, 1, 1, h), Grain.HOUR) for h in range(n)]


def test_batches_keep_plan_order_and_cover_everything() -> None:
    parts = hours(10)
    out = batches(parts, 4)
    assert [len(b) for b in out] == [4, 4, 2]
    assert [p for b in out for p in b] == parts
    assert batches(parts, 1) == [(p,) for p in parts]
    assert batches([], 5) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2024-01-01"}, "give --start and --end (inclusive), or an explicit --partitions list"),
        ({"start": "2024-01-01", "end": "2024-01-02", "partitions": ("2024-01-01",)}, "not both"),
        ({"partitions": ("2024-01-01",), "batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
    ],
)
def test_request_shape_errors_are_one_line(params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        BackfillRequest.build(pipeline="p", **params)


def test_explicit_list_request() -> None:
    r = BackfillRequest.build(pipeline="p", partitions=["2024-01-03", "2024-01-01"], batch_size=10)
    assert r.partitions == ("2024-01-03", "2024-01-01") and r.start is None and r.batch_size == 10


def _inputs(partitions: list[str], **kw: str) -> dict[str, object]:
    kw.setdefault("source_digests", ["d"] * len(partitions))
    return {"pipeline": "p", "partitions": partitions, "fingerprint": "1:abc", "target_id": "t", **kw}


def test_batch_cache_key_depends_on_each_partition_and_fingerprint() -> None:
    policy = BatchCachePolicy()
    key = policy.compute_key(None, _inputs(["a", "b"]), {})  # type: ignore[arg-type]
    assert key is not None and key.startswith("backfill-p-batch-a-2-")
    assert key == policy.compute_key(None, _inputs(["a", "b"], run_id="other"), {})  # type: ignore[arg-type]
    others = [
        _inputs(["a"]),
        _inputs(["a", "c"]),
        _inputs(["a", "b"], fingerprint="2:abc"),
        _inputs(["a", "b"], target_id="new-table"),
    ]
    assert all(policy.compute_key(None, i, {}) != key for i in others)  # type: ignore[arg-type]
    assert policy.compute_key(None, _inputs([]), {}) is None  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(policy)) == policy


def test_batch_failure_survives_pickling_with_every_result() -> None:
    done = PartitionResult("p", "a", "1:x", 1, 1, 3, 0.1, 0.01, "r")
    error = BatchFailedError(BatchResult((done,), (("b", "boom"),), ("c",)))
    again = pickle.loads(pickle.dumps(error))
    assert again.result == error.result and "b: boom" in str(again)


def test_retries_inside_a_batch() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky(n: int) -> PartitionResult:
        calls.append(n)
        if n < 3:
            raise OSError("transient")
        return PartitionResult("p", "a", "f", 1, 1, None, 0.0, 0.0, "r")

    assert isinstance(_with_retries(flaky, 2, 1.0, sleeps.append), PartitionResult)
    assert calls == [1, 2, 3] and len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.5 and 2.0 <= sleeps[1] <= 3.0

    def invalid(n: int) -> PartitionResult:
        calls.append(n)
        raise PartitionValidationError("rows outside the partition")

    calls.clear()
    assert _with_retries(invalid, 5, 0.0, sleeps.append) == "rows outside the partition" and calls == [1]

    def always(n: int) -> PartitionResult:
        raise OSError("down")

    assert _with_retries(always, 1, 0.0, lambda s: None) == "OSError: down"


def test_task_runner_by_settings() -> None:
    assert isinstance(task_runner(BackfillSettings()), ThreadPoolTaskRunner)
    remote = task_runner(BackfillSettings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, BackfillDaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = task_runner(BackfillSettings(task_runner="dask", dask_workers=3))
    assert isinstance(local, BackfillDaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    assert isinstance(local.duplicate(), BackfillDaskTaskRunner)


def test_engine_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_ENGINE", "bench.engines:SleepEngine")
    engine = get_engine()
    assert type(engine).__name__ == "SleepEngine" and get_engine() is engine
    monkeypatch.setenv("BACKFILL_ENGINE", "nowhere.engines:Missing")
    with pytest.raises(ConfigurationError, match=r"BACKFILL_ENGINE='nowhere\.engines:Missing' cannot be loaded"):
        get_engine()


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_MAX_CONCURRENCY", "3")
    assert get_settings().max_concurrency == 3 and get_settings() is get_settings()
    monkeypatch.setenv("BACKFILL_MAX_CONCURRENCY", "5")
    assert get_settings().max_concurrency == 5
