"""The cache policy that makes a rerun skip completed partitions.

Prefect's default policy includes the flow RUN_ID, so a new run never hits it; and TASK_SOURCE hashes
only the task's text, not the transform. This policy keys a completed partition on exactly what
determines its content: pipeline, partition, transform fingerprint (explicit version + hash of the
transform's code) and the target's identity (the Delta table id, so a dropped and recreated target is
written again). It is a plain picklable dataclass, so it travels to Dask workers.
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
    fields: tuple[str, ...] = ("pipeline", "partition", "fingerprint", "target_id")

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs or any(name not in inputs for name in self.fields):
            return None  # not a partition call: never cache rather than cache wrongly
        digest = hash_objects({name: str(inputs[name]) for name in self.fields}, raise_on_failure=True)
        # A readable prefix: cache records are files named by key in result storage.
        return f"backfill-{inputs['pipeline']}-{inputs['partition']}-{digest}"


@dataclass
class BatchCachePolicy(CachePolicy):
    """The same key for a batch: its partitions (in order) instead of one. A later run forms the same
    batch only from the same partitions, so a hit means each of them completed at this fingerprint."""

    fields: tuple[str, ...] = ("pipeline", "partitions", "fingerprint", "target_id")

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs or any(name not in inputs for name in self.fields) or not inputs["partitions"]:
            return None
        keys = [str(k) for k in inputs["partitions"]]
        digest = hash_objects(
            {
                "pipeline": str(inputs["pipeline"]),
                "partitions": keys,
                "fingerprint": str(inputs["fingerprint"]),
                "target_id": str(inputs["target_id"]),
            },
            raise_on_failure=True,
        )
        return f"backfill-{inputs['pipeline']}-batch-{keys[0]}-{len(keys)}-{digest}"
