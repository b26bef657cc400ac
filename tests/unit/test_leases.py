"""Run leases and the claims lock on real Delta tables (delta-rs, no JVM): liveness that needs nobody
to clean up after a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prefect_backfill.claims_lock import claims_lock
from prefect_backfill.coordination import claim, free_slots, held_partitions
from prefect_backfill.errors import CoordinationTimeoutError
from prefect_backfill.holders import Holder, this_process
from prefect_backfill.leases import LeaseTable, RunLease
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.planning import PartitionState, Plan, Status, make_plan

PARTS = partitions_between("2024-01-01", "2024-01-04", Grain.DAY)
T = "/lake/t"  # the target key all runs here write


def _killed_holder(path: Path, take_lock: bool = False) -> str:
    """A real process takes a lease (and the claims lock), says so, and is killed with SIGKILL."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from prefect_backfill.claims_lock import claims_lock
        from prefect_backfill.leases import LeaseTable, RunLease
        table = LeaseTable({str(path)!r})
        lease = RunLease(table, "dead-run", "p", {T!r}).__enter__()
        lease.renew(slots=3)
        if {take_lock!r}:
            claims_lock(table, {T!r}, lease.lease, timeout=5).__enter__()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return "dead-run"


def test_a_killed_runs_lease_is_dead_at_once_on_its_own_host(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    run = _killed_holder(tmp_path / "leases")
    lease = table.runs("p")[run]
    assert not lease.ended and lease.slots == 3 and lease.expires_at > datetime.now(UTC)  # not expired...
    assert table.live_runs(T, "p") == {}  # ...but its process is gone: dead, and its slots are free


def test_a_lease_from_another_host_lives_until_it_expires(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with RunLease(table, "mine", "p", T) as mine:
        elsewhere = replace(mine.lease, run_id="remote", holder=Holder("other-host", "boot", 1, None))
        table.append([elsewhere])
        now = datetime.now(UTC)
        assert set(table.live_runs(T, "p", now)) == {"mine", "remote"}
        later = elsewhere.expires_at + timedelta(seconds=1)
        assert not table.runs("p")["remote"].live(later, this_process())  # expired: dead, wherever it ran
    assert set(table.live_runs(T, "p")) == {"remote"}  # ours ended on exit


def test_a_pid_reused_by_another_process_does_not_pass_for_the_dead_holder() -> None:
    me = this_process()
    assert me.process_exists()
    assert not replace(me, pid_start=(me.pid_start or 0) + 1).process_exists()


def test_the_claims_lock_admits_one_run_at_a_time(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    inside: list[int] = []
    peak: list[int] = []

    def run(i: int) -> None:
        with RunLease(table, f"run-{i}", "p", T) as lease, claims_lock(table, T, lease.lease, timeout=60):
            inside.append(i)
            peak.append(len(inside))
            time.sleep(0.1)
            inside.remove(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(peak) == 4 and max(peak) == 1


def test_the_claims_lock_tells_a_lost_race_by_deltas_type_not_by_its_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that lost to another one is delta-rs's CommitFailedError: look again. Any other error is the
    lease table's trouble, whatever its text says (it used to be taken for a race when it said "conflict")."""
    from deltalake.exceptions import CommitFailedError, DeltaError

    import prefect_backfill.claims_lock as module
    from prefect_backfill.errors import LedgerError

    table = LeaseTable(str(tmp_path / "leases"))
    with RunLease(table, "r", "p", T) as lease, claims_lock(table, T, lease.lease, timeout=5):
        pass  # the locks table exists now
    locks = table.read_table(table.locks_path)

    def failing(error: Exception) -> object:
        def write(*args: object, **kwargs: object) -> None:
            raise error

        return write

    monkeypatch.setattr(module, "write_deltalake", failing(CommitFailedError("Failed to commit transaction: 3")))
    assert module._swap(table, locks, "lock-x", lease.lease) is False
    monkeypatch.setattr(module, "write_deltalake", failing(DeltaError("Generic error: a conflict, concurrent")))
    with pytest.raises(LedgerError, match="cannot be written"):
        module._swap(table, locks, "lock-x", lease.lease)


def test_a_lock_left_by_a_killed_run_is_taken_over_at_once(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    _killed_holder(tmp_path / "leases", take_lock=True)
    started = time.monotonic()
    with RunLease(table, "next", "p", T) as lease, claims_lock(table, T, lease.lease, timeout=5):
        pass
    assert time.monotonic() - started < 5


def _plan() -> Plan:
    return make_plan("p", "1:a", PARTS, {})


def test_claim_takes_free_slots_leaves_held_partitions_and_records_claims(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with RunLease(table, "other", "p", T) as other, RunLease(table, "mine", "p", T) as mine:
        other.renew(slots=3)
        ledger = {
            "2024-01-02": PartitionState("2024-01-02", Status.RUNNING, "1:a", "1", "other", datetime.now(UTC)),
            "2024-01-03": PartitionState("2024-01-03", Status.PENDING, "1:a", "1", "dead", datetime.now(UTC)),
        }
        claimed: list[Plan] = []
        got = claim(
            table, mine, _plan(), current=lambda _: ledger, record_claims=claimed.append, wanted=2, cap=4, timeout=5
        )
        assert got.slots == 1  # 4 − the other run's 3
        assert [p.key for p in got.plan.to_run] == ["2024-01-01", "2024-01-03", "2024-01-04"]  # a dead claim is free
        assert claimed == [got.plan]
        assert table.live_runs(T, "p")["mine"].slots == 1  # visible to the next run before it claims


def test_claim_waits_for_a_full_cap_then_gives_up_naming_the_holder(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    said: list[str] = []
    with RunLease(table, "busy-run", "p", T) as other, RunLease(table, "mine", "p", T) as mine:
        other.renew(slots=2)
        with pytest.raises(CoordinationTimeoutError, match=r"all 2 slots of p's cap are held \(run busy-run"):
            claim(
                table,
                mine,
                _plan(),
                current=lambda _: {},
                record_claims=lambda _: None,
                wanted=2,
                cap=2,
                timeout=1,
                say=said.append,
                sleep=lambda s: time.sleep(0.05),
            )
    assert said and said[0].startswith("waiting for a slot of p's cap (2): run busy-run")
    assert CoordinationTimeoutError("x").exit_code == 4


def test_slot_and_holder_arithmetic() -> None:
    now = datetime.now(UTC)
    table = LeaseTable("/nowhere")
    lease = RunLease(table, "a", "p", T).lease
    live = {"a": replace(lease, slots=2), "b": replace(lease, run_id="b", slots=1)}
    assert free_slots(4, live, "a") == 3 and free_slots(1, live, "c") == 0
    current = {"k": PartitionState("k", Status.RUNNING, "f", "1", "b", now)}
    assert list(held_partitions(current, "a", live)) == ["k"] and held_partitions(current, "b", live) == {}


def test_a_run_that_waited_for_the_cap_does_not_redo_what_the_other_run_completed_meanwhile(tmp_path: Path) -> None:
    """The race seen in CI: B plans 01..04 while A holds the whole cap and 02..03; when A ends, 02..03 are
    COMPLETE (by A, after B planned) and must not be written again by B."""
    table = LeaseTable(str(tmp_path / "leases"))
    planned_at = datetime.now(UTC)
    ledger: dict[str, PartitionState] = {
        k: PartitionState(k, Status.PENDING, "1:a", "1", "run-a", planned_at) for k in ("2024-01-02", "2024-01-03")
    }
    a = RunLease(table, "run-a", "p", T).__enter__()
    a.renew(slots=2)

    def a_finishes(_: float) -> None:  # while B waits for a slot
        for key in ("2024-01-02", "2024-01-03"):
            ledger[key] = PartitionState(key, Status.COMPLETE, "1:a", "1", "run-a", datetime.now(UTC))
        a.__exit__(None, None, None)

    with RunLease(table, "run-b", "p", T) as b:
        got = claim(
            table,
            b,
            _plan(),
            current=lambda _: ledger,
            record_claims=lambda _: None,
            wanted=2,
            cap=2,
            timeout=30,
            planned_at=planned_at,
            sleep=a_finishes,
        )
    assert got.slots == 2 and [p.key for p in got.plan.to_run] == ["2024-01-01", "2024-01-04"]
    assert {s.partition.key for s in got.plan.skipped} == {"2024-01-02", "2024-01-03"}
