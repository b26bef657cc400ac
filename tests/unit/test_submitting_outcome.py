"""A finished chunk's outcome is read from its future, never asked of the Prefect API: the API may not have
recorded the task run yet when the done-callback runs (a 404 read as Pending counted a finished chunk as all
failed), and asking costs one request per chunk."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import pytest
from prefect.futures import PrefectConcurrentFuture
from prefect.states import Completed, Failed

from prefect_backfill.errors import ChunkFailedError
from prefect_backfill.results import ChunkResult
from prefect_backfill.submitting import _failed_in


def finished(state: Any) -> PrefectConcurrentFuture[Any]:
    wrapped: concurrent.futures.Future[Any] = concurrent.futures.Future()
    wrapped.set_result(state)
    return PrefectConcurrentFuture(uuid.uuid4(), wrapped)


@pytest.fixture(autouse=True)
def _no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the chunk's outcome was asked of the Prefect API")

    monkeypatch.setattr("prefect.futures.get_client", refuse)


def test_a_completed_chunk_has_no_failed_partition() -> None:
    assert _failed_in(finished(Completed()), 3) == 0


def test_a_chunk_with_failed_partitions_counts_exactly_those() -> None:
    error = ChunkFailedError(ChunkResult(failed=(("2024-01-02", "boom"),)))
    assert _failed_in(finished(Failed(data=error)), 3) == 1


def test_a_crashed_chunk_counts_all_its_partitions() -> None:
    assert _failed_in(finished(Failed(data=RuntimeError("the task itself failed"))), 3) == 3
