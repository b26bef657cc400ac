"""The cache's listing: one look at the storage tells which partitions have a record, so a run over tens of
thousands of due partitions asks for the few records that exist instead of every name (a request each on an
object store). It must name exactly the records :meth:`PartitionCache.get` would find."""

from __future__ import annotations

from pathlib import Path

from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.results import PartitionResult


def record(day: str) -> PartitionResult:
    return PartitionResult("p", day, "fp", 3, 3, 1, 0.1, 0.0, "run-1", source_digest="d", target_id="t")


def test_the_listing_names_exactly_the_records_that_get_finds(tmp_path: Path) -> None:
    cache = PartitionCache(str(tmp_path / "records"))
    assert cache.listing() == frozenset()  # nothing written yet: the folder does not exist
    for day in ("2024-01-01", "2024-01-03"):
        cache.put(record(day))
    keys = {day: cache_key("p", day, "fp", "t", "d") for day in ("2024-01-01", "2024-01-02", "2024-01-03")}
    listed = cache.listing()
    assert listed is not None
    assert {day for day, key in keys.items() if key in listed} == {"2024-01-01", "2024-01-03"}
    assert {day for day, key in keys.items() if cache.get(key) is not None} == {"2024-01-01", "2024-01-03"}


def test_a_saved_block_is_not_listed_and_every_name_is_asked_for() -> None:
    assert PartitionCache("local-file-system/records").listing() is None


def test_a_few_due_partitions_are_looked_up_and_many_are_listed() -> None:
    assert not PartitionCache.worth_listing(3)  # a rerun of a few: a lookup each, whatever the storage holds
    assert PartitionCache.worth_listing(43_848)  # five years of hours: one listing
