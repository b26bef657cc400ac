"""Retry only what can succeed, on real Spark + Delta: an error that always fails is not retried (a chunk is
bisected, without retries, to find its partitions), and a refused write reaches the ledger as its root
cause in one line, not as py4j's "An error occurred while calling o2397.save."."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def always_raises(df: DataFrame) -> DataFrame:
    """A bug that fails every row, inside Spark (the same input fails the same way every time). Typed: a
    bare ``raise_error`` is a void column, which Delta drops on write, so it would never be computed."""
    return to_silver_orders(df).withColumn("amount_usd", F.raise_error(F.lit("bad transform")).cast("double"))


def attempts(lake: Lake, name: str) -> Counter[str]:
    """How many times each partition was started (its RUNNING events)."""
    events = Ledger(lake.ledger).events(name).to_pylist()
    return Counter(e["partition"] for e in events if e["status"] == Status.RUNNING.value)


def test_an_error_that_always_fails_is_not_retried_only_bisected(lake: Lake, spark: Any) -> None:
    p = lake.make(always_raises)
    with pytest.raises(BackfillFailedError) as failure:
        # Retries with 5 s backoff would cost ~35 s per partition if this were retried as transient.
        backfill(pipeline=p.name, start=DAYS[0], end=DAYS[-1], max_concurrency=1, retries=2, retry_delay_seconds=5)
    assert sorted(failure.value.failed) == DAYS
    assert all("bad transform" in failure.value.errors[d] for d in DAYS), failure.value.errors
    started = attempts(lake, p.name)
    # One chunk of three, then its halves, then single partitions: every partition started at most three
    # times, never retried (attempt 1 each time), and no backoff slept.
    assert set(started) == set(DAYS) and max(started.values()) <= 3, started
    events = Ledger(lake.ledger).events(p.name).to_pylist()
    # Never retried: every failure is a first attempt (a retry would be attempt 2 or 3, after its backoff).
    # Not a wall-clock bound: it took 12.6 s on a busy machine without a single retry.
    assert {e["attempt"] for e in events if e["status"] == Status.FAILED.value} == {1}


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Folders made immutable (``chattr +i``: refused even to root, "Operation not permitted"), undone after."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_refused_write_is_not_retried_and_its_root_cause_is_one_line(
    lake: Lake, spark: Any, immutable: list[Path]
) -> None:
    p = lake.make(to_silver_orders)
    backfill(pipeline=p.name, start=DAYS[0], end=DAYS[0], max_concurrency=1)  # the table exists
    log = Path(lake.target) / "_delta_log"
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(log)], check=False).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem: cannot refuse a write to root")
    immutable.append(log)
    with pytest.raises(BackfillFailedError) as failure:
        backfill(pipeline=p.name, start=DAYS[1], end=DAYS[2], max_concurrency=1, retries=2, retry_delay_seconds=5)
    errors = failure.value.errors
    assert sorted(errors) == DAYS[1:]
    for error in errors.values():
        assert "Operation not permitted" in error, error
        assert "An error occurred while calling" not in error and "\n" not in error
    current = Ledger(lake.ledger).current(p.name)
    assert all(current[d].error == errors[d] for d in DAYS[1:])  # the ledger says the same
    traces = failure.value.traces  # ... and the whole trace is in the file the message names
    assert traces is not None and f"Full traces: {traces}" in str(failure.value)
    text = Path(traces).read_text()
    assert "Operation not permitted" in text and "\tat org.apache." in text  # the Java stack, kept
    tried = [e for e in Ledger(lake.ledger).events(p.name).to_pylist() if e["partition"] in DAYS[1:]]
    assert {e["attempt"] for e in tried if e["status"] in (Status.RUNNING.value, Status.FAILED.value)} == {1}
