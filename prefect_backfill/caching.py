"""The cache policies that make a rerun skip completed partitions.

Prefect's default policy includes the flow RUN_ID, so a new run never hits it; and TASK_SOURCE hashes
only the task's text, not the transform. These policies key completed work on exactly what determines
its content: pipeline, partition (or a batch's partitions, in order), transform fingerprint (explicit
version + hash of the transform's code), the source partition's content (a digest of its files in the
source's Delta log, so changed source data is computed again) and the target's identity (the Delta table
id, so a dropped and recreated target is written again). The flow never lets a cached result stand in
for a partition the target no longer has (it refreshes those). They are plain picklable dataclasses, so
they travel to Dask workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

__all__ = ["BatchCachePolicy", "PartitionCachePolicy"]


@dataclass
class PartitionCachePolicy(CachePolicy):
    fields: tuple[str, ...] = ("pipeline", "partition", "fingerprint", "target_id", "source_digest")

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs or any(name not in inputs for name in self.fields) or not inputs[self.fields[1]]:
            return None  # not a partition call: never cache rather than cache wrongly
        values = {name: self._text(inputs[name]) for name in self.fields}
        digest = hash_objects(values, raise_on_failure=True)
        # A readable prefix: cache records are files named by key in result storage.
        return f"backfill-{inputs['pipeline']}-{self._label(inputs[self.fields[1]])}-{digest}"

    @staticmethod
    def _text(value: Any) -> str | list[str]:
        return [str(v) for v in value] if isinstance(value, list | tuple) else str(value)

    @staticmethod
    def _label(what: Any) -> str:
        return str(what)


@dataclass
class BatchCachePolicy(PartitionCachePolicy):
    """The same key for a batch: its partitions, in order, instead of one. A later run forms the same
    batch only from the same partitions, so a hit means each of them completed at this fingerprint."""

    fields: tuple[str, ...] = ("pipeline", "partitions", "fingerprint", "target_id", "source_digests")

    @staticmethod
    def _label(what: Any) -> str:
        return f"batch-{what[0]}-{len(what)}"
