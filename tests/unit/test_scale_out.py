"""Pure parts of scale-out: request shapes, runner and engine choice, settings by environment
(chunking, chunk cache records and retries inside a chunk: tests/unit/test_chunks.py)."""

from __future__ import annotations

import re

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_backfill.engine import get_engine
from prefect_backfill.errors import ConfigurationError, InvalidRequestError
from prefect_backfill.request import BackfillRequest
from prefect_backfill.runners import BackfillDaskTaskRunner, task_runner
from prefect_backfill.settings import BackfillSettings, get_settings


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2024-01-01"}, "give --start and --end (inclusive), or an explicit --partitions list"),
        ({"start": "2024-01-01", "end": "2024-01-02", "partitions": ("2024-01-01",)}, "not both"),
        (
            {"partitions": ("2024-01-01",), "chunk_partitions": 0},
            "--chunk-partitions (chunk_partitions): Input should be greater than or equal to 1",
        ),
        ({"partitions": ("2024-01-01",), "chunk_mb": 0}, "--chunk-mb (chunk_mb): Input should be greater than 0"),
    ],
)
def test_request_shape_errors_are_one_line(params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        BackfillRequest.build(pipeline="p", **params)


def test_explicit_list_request() -> None:
    r = BackfillRequest.build(pipeline="p", partitions=["2024-01-03", "2024-01-01"], chunk_partitions=10)
    assert r.partitions == ("2024-01-03", "2024-01-01") and r.start is None and r.chunk_partitions == 10


def test_task_runner_by_settings() -> None:
    assert isinstance(task_runner(BackfillSettings()), ThreadPoolTaskRunner)
    remote = task_runner(BackfillSettings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, BackfillDaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = task_runner(BackfillSettings(task_runner="dask", dask_workers=3))
    assert isinstance(local, BackfillDaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    assert isinstance(local.duplicate(), BackfillDaskTaskRunner)


def test_engine_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_ENGINE", "prefect_backfill.testing:SleepEngine")
    engine = get_engine()
    assert type(engine).__name__ == "SleepEngine" and get_engine() is engine
    monkeypatch.setenv("BACKFILL_ENGINE", "nowhere.engines:Missing")
    with pytest.raises(ConfigurationError, match=r"BACKFILL_ENGINE='nowhere\.engines:Missing' cannot be loaded"):
        get_engine()


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # (BACKFILL_MAX_CONCURRENCY was this test's example: a setting nothing read, gone; the flag's default
    # is the request's.)
    monkeypatch.setenv("BACKFILL_MAX_WORKERS", "3")
    assert get_settings().max_workers == 3 and get_settings() is get_settings()
    monkeypatch.setenv("BACKFILL_MAX_WORKERS", "5")
    assert get_settings().max_workers == 5
