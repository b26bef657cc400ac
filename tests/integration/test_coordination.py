"""Two runs on one target at once: the shared cap holds, and no partition has two writers, whether the runs
are of one pipeline or of two pipelines writing the same table (an alias)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import pytest
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.cli import run_cli
from prefect_backfill.coordination import cap_name, ensure_limit, target_key
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.parametrize("cluster_by", [(), ("order_date",)], ids=["partitioned", "clustered"])
def test_overlapping_runs_share_the_cap_and_never_write_one_partition_twice(
    lake: Lake, spark: Any, cluster_by: tuple[str, ...]
) -> None:
    """On a clustered target too, whose chunks commit one at a time: two runs, one writer per partition."""
    p = lake.make(to_silver_orders, cluster_by=cluster_by)
    assert ensure_limit(cap_name(p.name), 2) == 2
    results: dict[str, Any] = {}

    def run(label: str, start: str, end: str) -> None:
        results[label] = backfill(
            pipeline=p.name, start=start, end=end, max_concurrency=2, retries=0, return_state=True
        )

    threads = [
        threading.Thread(target=run, args=("a", "2024-01-01", "2024-01-05")),
        threading.Thread(target=run, args=("b", "2024-01-03", "2024-01-08")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(state.is_completed() for state in results.values()), results
    for state in results.values():  # partitions left to the other run: never a plain Completed
        assert state.name == ("PartlyHeld" if state.result().held else "Completed"), state

    events = Ledger(lake.ledger).events(p.name).to_pylist()
    writers: dict[str, set[str]] = defaultdict(set)
    chunks: set[tuple[str, datetime, datetime]] = set()  # partitions of one chunk share start and end
    for e in events:
        if e["status"] == "RUNNING":
            writers[e["partition"]].add(e["run_id"])
        elif e["status"] == "COMPLETE":
            chunks.add((e["run_id"], e["started_at"], e["finished_at"]))
    assert sorted(writers) == [f"2024-01-0{d}" for d in range(1, 9)]
    assert all(len(runs) == 1 for runs in writers.values()), dict(writers)  # one writer per partition
    assert max_overlap([(start, end) for _, start, end in chunks]) <= 2  # the cap held: ≤ 2 jobs at once

    target = spark.read.format("delta").load(lake.target)
    assert target.count() == 8 * 40 and target.select(F.countDistinct("order_id")).first()[0] == 320


def test_an_alias_leaves_to_another_pipelines_live_run_the_partitions_it_holds_on_their_target(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pipeline A and its alias B (same definition, another name) write one table. While a live run of A
    holds 02..03 (PENDING under A's name in the shared ledger), `backfill run B` over 01..04 writes only
    01 and 04, and says it left two partitions to another live run (exit code 4)."""
    a = lake.make(to_silver_orders, name="target_claims_a")
    b = lake.make(to_silver_orders, name="target_claims_b")
    assert target_key(a.target) == target_key(b.target) and a.fingerprint == b.fingerprint
    held = ["2024-01-02", "2024-01-03"]
    ledger = Ledger(lake.ledger)
    with RunLease(LeaseTable(lease_location(lake.ledger)), "run-of-a", a.name, target_key(a.target)) as lease:
        lease.renew(slots=1)
        ledger.record([LedgerEvent("run-of-a", a.name, k, Status.PENDING, a.version, a.fingerprint) for k in held])
        capsys.readouterr()
        code = run_cli(["run", b.name, "--start", "2024-01-01", "--end", "2024-01-04", "--retries", "0"])
        out, err = capsys.readouterr()
    assert code == 4, out + err
    assert "2 partition(s) were left to another live run" in out + err
    states = ledger.current(b.name)
    assert {k: s.status for k, s in states.items()} == {"2024-01-01": Status.COMPLETE, "2024-01-04": Status.COMPLETE}
    assert {k: s.status for k, s in ledger.current(a.name).items()} == dict.fromkeys(held, Status.PENDING)
    days = {r[0] for r in spark.read.format("delta").load(lake.target).select("order_date").distinct().collect()}
    assert days == {date(2024, 1, 1), date(2024, 1, 4)}  # B wrote nothing A holds
