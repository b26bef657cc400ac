"""Catalog tables on a real Hive metastore (Hive's own Thrift service on Derby, from pyspark's jars), as a
user runs them: ``backfill run``/``status``/``audit``/``undo`` of a pipeline whose source is
``bronze.crash_orders`` (an external table) and whose target is ``silver.crash_orders`` (a managed table the
first run creates), with ``BACKFILL_METASTORE_URI`` and ``BACKFILL_LEDGER_PATH`` set, nothing else.

The tests share one lake, in order: a run killed with ``kill -9`` mid-chunk and a plain rerun (the crash
harness's checks: every partition COMPLETE, silver equal to the transform of bronze), which records commit
versions and target digests; ``status`` answering from the metastore and the logs with no JVM to start;
a second run over new bronze, audited clean and verified, then undone for one day.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prefect_backfill.testing.metastore import Metastore, running_metastore, spark_sql
from tests.e2e.crash_harness import (
    BIN,
    NAME,
    ROOT,
    SILVER_COLUMNS,
    CrashLake,
    Trial,
    current_bronze,
    draw_kill_point,
    expected_rows,
    read_rows,
    run_trial,
    stop_all,
    write_bronze,
)

pytestmark = pytest.mark.e2e

DAYS, SLEEP_S, SEED = 4, 0.5, 20261208


@pytest.fixture(scope="module")
def metastore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metastore]:
    root = tmp_path_factory.mktemp("metastore")
    with running_metastore(root, log=root / "metastore.log") as store:
        yield store


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, metastore: Metastore) -> Iterator[CrashLake]:
    lake = CrashLake(tmp_path_factory.mktemp("catalog"), days=DAYS, sleep_s=SLEEP_S, metastore_uri=metastore.uri)
    write_bronze(lake, salt=1, rows_per_day=5)
    spark_sql(metastore.uri, lake.catalog_sql(), env=lake.env())
    try:
        yield lake
    finally:
        stop_all()


def _cli(lake: CrashLake, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "backfill"), *args],
        cwd=ROOT,
        env=env or lake.env(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _complete_events(lake: CrashLake, run_ids: set[str]) -> list[dict[str, Any]]:
    return [e for e in lake.events() if e["run_id"] in run_ids and e["status"] == "COMPLETE"]


def test_a_catalog_target_after_kill_9_mid_chunk_records_versions_and_digests(lake: CrashLake) -> None:
    point = draw_kill_point(random.Random(SEED), "mid-partition", DAYS, lake.max_concurrency)
    before = lake.run_ids()
    result = run_trial(lake, Trial(0, point, salt=SEED % 1000 * 1000 + 11, rows_per_day=9))
    print(result.report())
    assert result.ok, result.report()
    assert Path(lake.silver, "_delta_log").is_dir(), "the managed target is not where its database says"
    complete = _complete_events(lake, lake.run_ids() - before)
    assert {e["partition"] for e in complete} == set(lake.keys)
    # What the metastore's answer buys: the commit's version and the partition's digest, as on a path.
    assert all(e["table_version"] is not None and e["target_digest"] for e in complete), complete


def test_status_answers_from_the_metastore_without_spark(lake: CrashLake) -> None:
    env = {**lake.env(), "JAVA_HOME": str(lake.root / "no-java")}  # a JVM start would fail, loudly
    done = _cli(lake, "status", NAME, "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["COMPLETE"] == DAYS, report
    assert report["drift_checked"] and not report["drifted"] and not report["drift_unknown"], report
    assert report["drift_unverified"] == [], report  # digests recorded and compared, as on a path target

    no_metastore = {k: v for k, v in env.items() if k != "BACKFILL_METASTORE_URI"}
    done = _cli(lake, "status", NAME, "--json", env=no_metastore)  # still no JVM: it says what it cannot tell
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["COMPLETE"] == DAYS and "BACKFILL_METASTORE_URI" in report["drift_unknown"], report

    dropped = {**env, "CRASH_SILVER": "silver.not_there"}  # the metastore answers: no such table
    done = _cli(lake, "status", NAME, "--json", env=dropped)
    assert done.returncode == 0, done.stderr
    assert "has no Delta table of that name" in json.loads(done.stdout)["drift_unknown"], done.stdout


def test_a_metastore_that_does_not_answer_is_said_in_one_line(lake: CrashLake) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gone = f"thrift://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens there once the block ends
    env = {**lake.env(), "BACKFILL_METASTORE_URI": gone, "JAVA_HOME": str(lake.root / "no-java")}
    status = _cli(lake, "status", NAME, "--json", env=env)  # a view: the ledger still, the reason said
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["counts"]["COMPLETE"] == DAYS and gone in report["drift_unknown"], report
    run = _cli(lake, *lake.command[1:], env=env)  # refused before anything starts (no Spark, no server)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stdout + run.stderr
    assert gone in lines[0] and "BACKFILL_METASTORE_URI" in lines[0], lines


def test_a_second_run_is_audited_verified_and_one_day_undone(lake: CrashLake) -> None:
    old_bronze = current_bronze(lake)
    before = lake.run_ids()
    write_bronze(lake, salt=SEED % 1000 * 1000 + 22, rows_per_day=7)
    done = _cli(lake, *lake.command[1:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (second,) = lake.run_ids() - before
    assert read_rows(lake.silver, SILVER_COLUMNS) == expected_rows(current_bronze(lake))

    audit = _cli(lake, "audit", NAME)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "clean" in audit.stdout and "no recorded target digest" not in audit.stdout, audit.stdout

    day = lake.keys[1]
    undo = _cli(lake, "undo", NAME, "--run", second, "--partitions", day, "--yes")
    assert undo.returncode == 0, undo.stdout[-3000:] + undo.stderr[-3000:]
    rows = read_rows(lake.silver, SILVER_COLUMNS)
    restored = [r for r in rows if str(r[1]) == day]
    assert restored == [r for r in expected_rows(old_bronze) if str(r[1]) == day]
    others = [r for r in rows if str(r[1]) != day]
    assert others == [r for r in expected_rows(current_bronze(lake)) if str(r[1]) != day]
