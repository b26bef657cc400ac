"""The cache's listing on an object store (a real S3 server): one listing names exactly the records that
lookups find, as on a local folder (``tests/unit/test_cache_listing.py``)."""

from __future__ import annotations

from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.results import PartitionResult
from prefect_backfill.testing.object_store import ObjectStore


def test_the_listing_on_the_store_names_exactly_the_records_that_get_finds(object_store: ObjectStore) -> None:
    cache = PartitionCache("s3a://lake/cache-listing/records")
    assert cache.listing() == frozenset()  # nothing under the prefix yet
    for day in ("2024-01-01", "2024-01-03"):
        cache.put(PartitionResult("p", day, "fp", 3, 3, 1, 0.1, 0.0, "run-1", source_digest="d", target_id="t"))
    keys = {day: cache_key("p", day, "fp", "t", "d") for day in ("2024-01-01", "2024-01-02", "2024-01-03")}
    listed = cache.listing()
    assert listed is not None
    assert {day for day, key in keys.items() if key in listed} == {"2024-01-01", "2024-01-03"}
    assert {day for day, key in keys.items() if cache.get(key) is not None} == {"2024-01-01", "2024-01-03"}
