"""The ledger, the run leases and the claims lock on an object store, written by several processes at once
(a real S3-compatible server, delta-rs with conditional puts): no event is lost, the lock admits one
holder at a time, and a killed holder's lease lets go on its own."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from prefect_backfill.leases import LeaseTable
from prefect_backfill.ledger import Ledger
from prefect_backfill.testing.object_store import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
TARGET = "s3a://lake/coordination/orders"


def _processes(code: str, n: int) -> list[str]:
    """Run ``code`` in ``n`` processes started together (argv[1] is the process's number); their outputs."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(i)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outs.append(out)
    return outs


def test_three_processes_appending_to_one_ledger_on_the_store_lose_no_event(object_store: ObjectStore) -> None:
    path = f"s3a://lake/ledgers/{uuid.uuid4().hex[:8]}"
    _processes(
        f"""
        import sys
        from prefect_backfill.ledger import Ledger
        from prefect_backfill.ledger_record import LedgerEvent
        from prefect_backfill.planning import Status
        n = sys.argv[1]
        ledger = Ledger({path!r})
        for i in range(12):
            ledger.record([LedgerEvent("run-" + n, "orders", f"p{{n}}-{{i}}", Status.RUNNING, "1", "f")])
        """,
        3,
    )
    assert Ledger(path).events("orders").num_rows == 36
    assert len(Ledger(path).current("orders")) == 36


def test_the_claims_lock_on_the_store_admits_one_process_at_a_time(object_store: ObjectStore) -> None:
    leases = f"s3a://lake/leases/{uuid.uuid4().hex[:8]}"
    outs = _processes(
        f"""
        import json, sys, time
        from prefect_backfill.claims_lock import claims_lock
        from prefect_backfill.leases import LeaseTable, RunLease
        table = LeaseTable({leases!r})
        spans = []
        with RunLease(table, "run-" + sys.argv[1], "p", {TARGET!r}) as lease:
            for _ in range(3):
                with claims_lock(table, {TARGET!r}, lease.lease, timeout=120):
                    start = time.time()
                    time.sleep(0.3)
                    spans.append((start, time.time()))
        print(json.dumps(spans))
        """,
        3,
    )
    spans = sorted(tuple(span) for out in outs for span in json.loads(out))
    assert len(spans) == 9
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans  # never two holders at once


def test_a_killed_holders_lease_on_the_store_is_dead_and_another_run_takes_the_lock(object_store: ObjectStore) -> None:
    leases = f"s3a://lake/leases/{uuid.uuid4().hex[:8]}"
    code = f"""
        import os, signal
        from prefect_backfill.claims_lock import claims_lock
        from prefect_backfill.leases import LeaseTable, RunLease
        table = LeaseTable({leases!r})
        lease = RunLease(table, "dead-run", "p", {TARGET!r}).__enter__()
        lease.renew(slots=2)
        claims_lock(table, {TARGET!r}, lease.lease, timeout=30).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=dict(os.environ), timeout=120)
    assert proc.returncode == -9
    table = LeaseTable(leases)
    assert "dead-run" in table.runs("p") and table.live_runs(TARGET, "p") == {}
    _processes(
        f"""
        from prefect_backfill.claims_lock import claims_lock
        from prefect_backfill.leases import LeaseTable, RunLease
        table = LeaseTable({leases!r})
        with RunLease(table, "next-run", "p", {TARGET!r}) as lease:
            with claims_lock(table, {TARGET!r}, lease.lease, timeout=20):
                pass
        """,
        1,
    )


pytestmark = pytest.mark.usefixtures("object_store")


def test_a_renewal_costs_the_same_number_of_requests_at_the_first_and_the_hundredth(
    object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run renews its lease every 15 s all night: each renewal must cost about the same number of requests
    to the store, not more with every commit (opened anew, the runs table replayed its log since the last
    checkpoint: 11 requests at the first renewal, 129 at the 60th, until delta-rs checkpoints at the 100th
    commit). Counted by a proxy in front of the real server; the median, since the 100th commit writes that
    checkpoint once."""
    from prefect_backfill.leases import RunLease
    from prefect_backfill.testing.fault_proxy import FaultRules, faulty_proxy

    with faulty_proxy(object_store.endpoint, FaultRules()) as proxy:
        monkeypatch.setenv("BACKFILL_S3_ENDPOINT", proxy.endpoint)
        table = LeaseTable(f"s3a://lake/renewals-{uuid.uuid4().hex[:8]}/_backfill_progress/_leases")
        lease = RunLease(table, "run", "renewals", "target", heartbeat=3600)  # renewed here, not by its thread
        with lease:
            cost = []
            for _ in range(100):
                before = proxy.counts["requests"]
                lease.renew()
                cost.append(proxy.counts["requests"] - before)
            assert "run" in LeaseTable(table.path).live_runs("target", "renewals")
    assert statistics.median(cost[-20:]) <= statistics.median(cost[:20]) + 2, cost
