"""Two Spark drivers (two processes, each its own SparkSession) commit to one Delta table on a real S3 server
(versitygw) at the same time, each overwriting its own days with ``replaceWhere``: with
``ConditionalPutLogStore`` every commit either side saw succeed is in ``_delta_log`` with its tag, at the
version its driver saw, and every day holds exactly the rows of its last round.

Delta's default S3 store loses commits in this race, but only a few in a hundred at this machine's pace
(``python -m bench.two_drivers`` measures it): too rarely for a test of a few dozen rounds to assert it
without flaking, so only the protected case is asserted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.two_drivers import race
from prefect_backfill.testing.object_store import ObjectStore, running_store
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

CACHE = ROOT / ".cache"  # the Delta and hadoop-aws jars (Ivy), versitygw, the compiled log store
ROUNDS = 12  # per driver: 24 commits racing (the bench runs the long races), plus ~40 s of JVM starts


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    root = tmp_path_factory.mktemp("two-drivers-s3")
    with running_store(CACHE, root / "data", log=root / "versitygw.log") as running:
        yield running


@pytest.mark.timeout(900)  # a hang bound: 129-398 s on a conf of its own; 81 s on the package's (no Ivy, archive)
def test_conditional_put_log_store_keeps_every_commit_of_two_drivers(store: ObjectStore, tmp_path: Path) -> None:
    outcome = race(store, CACHE, "conditional", conditional=True, rounds=ROUNDS, period=0.0, work=tmp_path)

    assert outcome.failed == 0, outcome.errors
    assert outcome.made == 2 * ROUNDS
    assert outcome.lost == 0, f"commits missing from _delta_log: {outcome.lost_tags}"
    assert outcome.misplaced == 0, "a commit is in the log, but not at the version its driver saw it take"
    assert outcome.bad_days == 0, outcome.errors
    # create + two warm-ups + every round: each one its own version, none overwritten
    assert outcome.versions >= 3 + 2 * ROUNDS
