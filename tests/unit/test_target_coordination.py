"""One target, one writer: runs are coordinated by the table they write, not by their pipeline's name
(delta-rs only, no JVM). Two pipelines on one target (an alias) see each other's leases, claims and
slots; a pipeline on another target does not; lease tables of older releases (no ``target`` column)
still read, still count, and take the new rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from prefect_backfill.claims_lock import claims_lock, lock_name
from prefect_backfill.coordination import claim, held_on_target, target_key
from prefect_backfill.errors import CoordinationTimeoutError
from prefect_backfill.holders import this_process
from prefect_backfill.leases import SCHEMA, Lease, LeaseTable, RunLease
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.pipeline import TableRef
from prefect_backfill.planning import PartitionState, Status, make_plan

PARTS = partitions_between("2024-01-01", "2024-01-04", Grain.DAY)
T, U = "/lake/silver/orders", "/lake/silver/returns"  # two target keys
#: The lease schema of the release before targets: every column but ``target``.
OLD_SCHEMA = pa.schema([field for field in SCHEMA if field.name != "target"])


def _state(key: str, status: Status, run_id: str) -> PartitionState:
    return PartitionState(key, status, "1:a", "1", run_id, datetime.now(UTC))


def test_the_target_key_is_the_location_without_trailing_slash_or_the_catalog_name_lower_cased() -> None:
    assert target_key(TableRef("/lake/silver/orders/")) == "/lake/silver/orders"
    assert target_key(TableRef("/lake/silver/orders")) == "/lake/silver/orders"
    assert target_key(TableRef("s3://bucket/silver/orders/")) == "s3://bucket/silver/orders"  # a URI stays one
    assert target_key(TableRef("file:///lake/Silver/Orders")) == "file:///lake/Silver/Orders"  # paths keep case
    assert target_key(TableRef("Silver.Orders")) == target_key(TableRef("silver.orders")) == "silver.orders"
    assert target_key(TableRef("main.silver.orders")) != target_key(TableRef("silver.orders"))  # no guessing


def test_a_lock_name_is_a_safe_partition_value_derived_from_the_target() -> None:
    for key in (T, "s3://bucket/a b/'x'", "silver.orders"):
        name = lock_name(key)
        assert name.startswith("lock-") and name[5:].isalnum() and len(name) == 21
    assert lock_name(T) == lock_name(T) != lock_name(U)


def test_lease_rows_carry_their_target(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with RunLease(table, "run-1", "orders", T) as lease:
        lease.renew(slots=2)
        got = table.runs()["run-1"]
        assert (got.pipeline, got.target, got.slots) == ("orders", T, 2)
        assert Lease.from_row(got.row()) == got
    assert table.runs()["run-1"].ended and table.runs()["run-1"].target == T


def test_live_runs_are_those_on_the_target_whatever_their_pipeline(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with (
        RunLease(table, "run-a", "orders", T),
        RunLease(table, "run-b", "orders_alias", T),
        RunLease(table, "run-c", "returns", U),
    ):
        assert set(table.live_runs(T, "orders")) == {"run-a", "run-b"}
        assert set(table.live_runs(T, "orders_alias")) == {"run-a", "run-b"}
        assert set(table.live_runs(U, "returns")) == {"run-c"}
        assert set(table.live_runs(U, "orders")) == {"run-c"}  # the target decides, not the name


def _old_lease(run_id: str, pipeline: str, slots: int = 1) -> dict[str, object]:
    """A live lease row as the release before targets wrote it (this process holds it)."""
    now = datetime.now(UTC)
    me = this_process()
    return {
        "name": "run",
        "kind": "run",
        "run_id": run_id,
        "pipeline": pipeline,
        "host": me.host,
        "boot_id": me.boot_id,
        "pid": me.pid,
        "pid_start": me.pid_start,
        "slots": slots,
        "started_at": now,
        "renewed_at": now,
        "expires_at": now + timedelta(seconds=60),
        "ended": False,
    }


def test_a_lease_table_of_the_previous_release_is_read_matched_by_name_and_takes_new_rows(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    old_rows = [_old_lease("old-run", "orders", slots=2), _old_lease("old-other", "returns")]
    write_deltalake(table.runs_path, pa.Table.from_pylist(old_rows, schema=OLD_SCHEMA), partition_by=["name"])
    assert "target" not in DeltaTable(table.runs_path).schema().to_arrow().names

    old = table.runs()["old-run"]
    assert old.target is None and old.pipeline == "orders" and old.slots == 2
    # No target: matched by its pipeline's name, as that release did; an old live run is still respected.
    assert set(table.live_runs(T, "orders")) == {"old-run"}
    assert set(table.live_runs(T, "orders_alias")) == set()

    with RunLease(table, "new-run", "orders_alias", T):  # appending the new schema merges the column in
        assert "target" in DeltaTable(table.runs_path).schema().to_arrow().names
        assert set(table.live_runs(T, "orders")) == {"old-run", "new-run"}
        assert table.runs()["old-run"].target is None and table.runs()["new-run"].target == T
        table.compact()  # files with and without the column compact into one
        assert set(table.live_runs(T, "orders")) == {"old-run", "new-run"}


def test_the_claims_lock_is_one_per_target_shared_by_its_pipelines(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with (
        RunLease(table, "run-a", "orders", T) as a,
        RunLease(table, "run-b", "orders_alias", T) as b,
        claims_lock(table, T, a.lease, timeout=5),
    ):
        waiting = claims_lock(table, T, b.lease, timeout=0.5, sleep=lambda _: None)
        with pytest.raises(CoordinationTimeoutError, match=f"the claims lock of {T} is held by run run-a"), waiting:
            pass
        with claims_lock(table, U, b.lease, timeout=0.5):  # another target's lock is free
            pass


def test_claim_leaves_out_what_a_live_run_of_another_pipeline_on_the_target_holds(tmp_path: Path) -> None:
    """orders and orders_alias write T, returns writes U. Each run's claims are in the ledger under its own
    pipeline: the alias's run must leave out what orders' live run holds, not what returns' run holds,
    nor what a dead run of orders left PENDING."""
    table = LeaseTable(str(tmp_path / "leases"))
    ledger = {
        "orders": {
            "2024-01-02": _state("2024-01-02", Status.PENDING, "run-a"),
            "2024-01-04": _state("2024-01-04", Status.RUNNING, "dead-run"),
        },
        "returns": {"2024-01-03": _state("2024-01-03", Status.RUNNING, "run-c")},
        "orders_alias": {},
    }
    read: list[str] = []

    def current(name: str) -> dict[str, PartitionState]:
        read.append(name)
        return ledger[name]

    with (
        RunLease(table, "run-a", "orders", T),
        RunLease(table, "run-c", "returns", U),
        RunLease(table, "mine", "orders_alias", T) as mine,
    ):
        got = claim(
            table,
            mine,
            make_plan("orders_alias", "1:a", PARTS, {}),
            current=current,
            record_claims=lambda _: None,
            wanted=2,
            cap=4,
            timeout=5,
        )
    assert [p.key for p in got.plan.to_run] == ["2024-01-01", "2024-01-03", "2024-01-04"]
    assert [(s.partition.key, s.reason) for s in got.plan.skipped] == [
        ("2024-01-02", f"held by another live run ({table.runs()['run-a'].describe()} of pipeline orders)")
    ]
    assert sorted(set(read)) == ["orders", "orders_alias"]  # returns' ledger is not read: another target


def test_held_on_target_counts_only_states_claimed_by_that_pipelines_own_live_runs() -> None:
    lease = RunLease(LeaseTable("/nowhere"), "run-a", "orders", T).lease
    live = {"run-a": lease, "run-b": replace(lease, run_id="run-b", pipeline="orders_alias")}
    states = {
        "orders": {"k1": _state("k1", Status.RUNNING, "run-a"), "k2": _state("k2", Status.COMPLETE, "run-a")},
        "orders_alias": {"k3": _state("k3", Status.PENDING, "run-b"), "k4": _state("k4", Status.PENDING, "run-a")},
    }
    held = held_on_target("orders", states["orders"], states.__getitem__, "", live)
    assert sorted(held) == ["k1", "k3"]  # k4: run-a is not a run of orders_alias
    assert held["k3"].endswith("of pipeline orders_alias") and "of pipeline" not in held["k1"]
    assert held_on_target("orders", states["orders"], states.__getitem__, "run-b", live).keys() == {"k1"}


def test_free_slots_are_counted_across_the_pipelines_on_one_target(tmp_path: Path) -> None:
    table = LeaseTable(str(tmp_path / "leases"))
    with (
        RunLease(table, "run-a", "orders", T) as a,
        RunLease(table, "run-c", "returns", U) as c,
        RunLease(table, "mine", "orders_alias", T) as mine,
    ):
        a.renew(slots=3)
        c.renew(slots=3)  # another target's slots do not count
        got = claim(
            table,
            mine,
            make_plan("orders_alias", "1:a", PARTS, {}),
            current=lambda _: {},
            record_claims=lambda _: None,
            wanted=4,
            cap=4,
            timeout=5,
        )
        assert got.slots == 1  # 4 − orders' 3
        assert table.live_runs(T, "orders")["mine"].slots == 1


def test_a_run_beside_the_cap_never_waits_for_a_backfills_slots_and_takes_none_of_them(tmp_path: Path) -> None:
    """The daily pipeline's run: every slot of the cap is held by a night-long backfill; it starts at once
    (no wait, no CoordinationTimeoutError), keeps out of the backfill's claimed partitions, and holds no
    slot a backfill could be waiting for."""
    table = LeaseTable(str(tmp_path / "leases"))
    ledger = {"orders": {"2024-01-02": _state("2024-01-02", Status.PENDING, "backfill")}}
    with RunLease(table, "backfill", "orders", T) as night, RunLease(table, "daily", "orders", T) as daily:
        night.renew(slots=4)
        capped = dict(current=ledger.__getitem__, record_claims=lambda _: None, wanted=1, timeout=0.5)
        with pytest.raises(CoordinationTimeoutError, match="all 4 slots of orders's cap are held"):
            claim(table, daily, make_plan("orders", "1:a", PARTS, {}), cap=4, **capped)  # type: ignore[arg-type]
        got = claim(table, daily, make_plan("orders", "1:a", PARTS, {}), cap=None, **capped)  # type: ignore[arg-type]
        assert got.slots == 1 and "2024-01-02" not in [p.key for p in got.plan.to_run]
        assert table.live_runs(T, "orders")["daily"].slots == 0
