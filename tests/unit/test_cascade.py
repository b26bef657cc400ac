"""Partition mappings (DST days included), the checks a declaration gets when pipelines are registered, and
how a STALE mark plans (the effects are in tests/integration/test_cascade.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from prefect_backfill import registry
from prefect_backfill.cascade import (
    Custom,
    Identity,
    LookBack,
    Node,
    Policy,
    RollUp,
    Upstream,
    check_edges,
    downstream_of,
    mark_record,
    policy_of,
    upstream_of,
    upstream_reason,
)
from prefect_backfill.errors import InvalidRequestError, PipelineDefinitionError
from prefect_backfill.ledger_record import PartitionState, Status
from prefect_backfill.partitions import Grain, Partition, parse_partition_key
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import DueKind, make_plan
from prefect_backfill.request import BackfillRequest


def P(key: str, grain: Grain) -> Partition:
    return parse_partition_key(key, grain)


def keys(parts: Iterator[Partition] | list[Partition]) -> list[str]:
    return [p.key for p in parts]


def test_a_berlin_day_is_23_hours_in_march_and_25_in_october() -> None:
    berlin = RollUp("Europe/Berlin")
    spring = upstream_of(berlin, P("2024-03-31", Grain.DAY), Grain.HOUR)
    autumn = upstream_of(berlin, P("2024-10-27", Grain.DAY), Grain.HOUR)
    plain = upstream_of(berlin, P("2024-06-01", Grain.DAY), Grain.HOUR)
    assert (len(spring), len(autumn), len(plain)) == (23, 25, 24)
    assert keys(spring)[0] == "2024-03-30T23" and keys(spring)[-1] == "2024-03-31T21"  # CET, then CEST
    assert keys(autumn)[0] == "2024-10-26T22" and keys(autumn)[-1] == "2024-10-27T22"


def test_every_hour_of_a_year_rolls_up_into_exactly_one_berlin_day_and_back() -> None:
    berlin = RollUp("Europe/Berlin")
    first = datetime(2024, 1, 1)
    hours = [Partition(first + timedelta(hours=h), Grain.HOUR) for h in range(366 * 24)]
    days = downstream_of(berlin, hours, Grain.DAY)
    assert all(set(upstream_of(berlin, day, Grain.HOUR)) >= set(pulled) for day, pulled in days.items())
    assert sum(len(pulled) for pulled in days.values()) == len(hours)  # each hour in one day only
    local = datetime(2024, 3, 31, 1, tzinfo=UTC)  # 03:00 CEST on the short day
    assert list(downstream_of(berlin, [Partition(local.replace(tzinfo=None), Grain.HOUR)], Grain.DAY)) == [
        P("2024-03-31", Grain.DAY)
    ]


def test_days_roll_up_into_their_month() -> None:
    pulled = downstream_of(RollUp(), [P("2024-01-31", Grain.DAY), P("2024-02-01", Grain.DAY)], Grain.MONTH)
    assert {k.key: keys(v) for k, v in pulled.items()} == {"2024-01": ["2024-01-31"], "2024-02": ["2024-02-01"]}
    assert len(upstream_of(RollUp(), P("2024-02", Grain.MONTH), Grain.DAY)) == 29  # a leap year's February


def test_a_look_back_reaches_forward_from_a_change_and_back_from_a_read() -> None:
    week = LookBack(6)
    assert keys(upstream_of(week, P("2024-01-10", Grain.DAY), Grain.DAY)) == [f"2024-01-{d:02d}" for d in range(4, 11)]
    reached = downstream_of(week, [P("2024-01-10", Grain.DAY)], Grain.DAY)
    assert keys(list(reached)) == [f"2024-01-{d:02d}" for d in range(10, 17)]
    assert keys(upstream_of(LookBack(1), P("2024-03", Grain.MONTH), Grain.MONTH)) == ["2024-02", "2024-03"]


def test_a_custom_mapping_is_inverted_within_its_reach() -> None:
    def previous_day(day: Partition) -> list[Partition]:
        return [Partition(day.start - timedelta(days=1), Grain.DAY)]

    custom = Custom(previous_day, reach=timedelta(days=3))
    assert keys(list(downstream_of(custom, [P("2024-01-10", Grain.DAY)], Grain.DAY))) == ["2024-01-11"]
    assert keys(downstream_of(Identity(), [P("2024-01-10", Grain.DAY)], Grain.DAY)[P("2024-01-10", Grain.DAY)]) == [
        "2024-01-10"
    ]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            {"gold": Node(Grain.MONTH, (Upstream("silver", Identity()),)), "silver": Node(Grain.DAY, ())},
            "pipeline 'gold' (monthly) from upstream 'silver' (daily): identity maps partitions of one grain",
        ),
        (
            {"gold": Node(Grain.DAY, (Upstream("silver", RollUp()),)), "silver": Node(Grain.MONTH, ())},
            "a roll-up goes from a finer grain to a coarser one",
        ),
        (
            {
                "a": Node(Grain.DAY, (Upstream("b"),)),
                "b": Node(Grain.DAY, (Upstream("c"),)),
                "c": Node(Grain.DAY, (Upstream("a"),)),
            },
            "pipelines read each other in a cycle (a reads b reads c reads a)",
        ),
    ],
)
def test_a_declaration_that_cannot_hold_is_refused_in_one_line(nodes: dict[str, Node], message: str) -> None:
    with pytest.raises(PipelineDefinitionError) as caught:
        check_edges(nodes, complete=True)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_upstream_is_refused_only_once_every_module_is_loaded() -> None:
    nodes = {"gold": Node(Grain.MONTH, (Upstream("silvr", RollUp()),))}
    check_edges(nodes, complete=False)  # its module may not be imported yet
    with pytest.raises(PipelineDefinitionError, match="declares upstream 'silvr', which is not registered"):
        check_edges(nodes, complete=True)


def _pipeline(name: str, grain: Grain, *upstream: Upstream) -> Pipeline:
    return Pipeline(
        name=name,
        source=TableRef(f"/lake/{name}_in"),
        target=TableRef(f"/lake/{name}"),
        partition_column="d",
        transform=lambda df: df,
        version="1",
        grain=grain,
        upstream=upstream,
    )


def test_registering_a_cycle_is_refused_and_leaves_the_registry_as_it_was() -> None:
    registry.register(_pipeline("cyc_a", Grain.DAY, Upstream("cyc_b")), replace=True)
    registry.register(_pipeline("cyc_b", Grain.DAY), replace=True)
    with pytest.raises(PipelineDefinitionError, match="cycle"):
        registry.register(_pipeline("cyc_b", Grain.DAY, Upstream("cyc_a")), replace=True)
    assert registry.get_pipeline("cyc_b").upstream == ()
    assert [p.name for p, _ in registry.downstream_edges("cyc_b")] == ["cyc_a"]


def test_a_pipeline_cannot_name_itself_or_a_policy_that_does_not_exist() -> None:
    with pytest.raises(PipelineDefinitionError, match="names itself"):
        _pipeline("self_ref", Grain.DAY, Upstream("self_ref"))
    with pytest.raises(PipelineDefinitionError, match="cascade policy 'run' is not one of none, mark"):
        Upstream("silver", policy="run")  # type: ignore[arg-type]
    with pytest.raises(PipelineDefinitionError, match="not an IANA time zone"):
        RollUp("Berlin")
    with pytest.raises(PipelineDefinitionError, match="at least 1"):
        LookBack(0)


def test_the_run_overrides_the_edge_which_overrides_the_pipeline() -> None:
    edge, quiet = Upstream("silver"), Upstream("silver", policy=Policy.NONE)
    assert policy_of(edge, Policy.MARK) is Policy.MARK
    assert policy_of(quiet, Policy.MARK) is Policy.NONE
    assert policy_of(quiet, Policy.MARK, Policy.MARK) is Policy.MARK
    assert BackfillRequest(pipeline="p", start="2024-01-01", end="2024-01-02", cascade="NONE").cascade is Policy.NONE  # type: ignore[arg-type]
    with pytest.raises(
        InvalidRequestError, match=r"^--cascade \(cascade\): cascade policy 'sometimes' is not one of none, mark$"
    ):
        BackfillRequest.build(pipeline="p", start="2024-01-01", end="2024-01-02", cascade="sometimes")


def test_a_stale_mark_is_due_with_its_upstream_as_the_reason() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    record = mark_record("silver", [P("2024-02-10", Grain.DAY), P("2024-02-11", Grain.DAY)])
    states = {
        "2024-02": PartitionState("2024-02", Status.STALE, "1:abc", "1", "d835dc0b-1111", now, upstream=record),
        "2024-01": PartitionState("2024-01", Status.COMPLETE, "1:abc", "1", "r1", now),
    }
    plan = make_plan("gold", "1:abc", [P("2024-01", Grain.MONTH), P("2024-02", Grain.MONTH)], states)
    assert keys(list(plan.to_run)) == ["2024-02"]
    why = plan.why["2024-02"]
    assert why.kind is DueKind.UPSTREAM_CHANGED
    assert str(why) == "upstream changed since it was written (silver 2024-02-10, 2024-02-11 (run d835dc0b))"
    assert upstream_reason(None, "abcdef123") == "? (run abcdef12)"
