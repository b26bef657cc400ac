"""Cache records of completed partitions: one per partition, in Prefect's result storage.

The second line of resume (the ledger is the first): a partition whose cache record exists was
computed from exactly this source content, by exactly this transform, into exactly this target table,
so a run that lost its ledger does not redo it. Records are per *partition*, not per task run, because
chunks are only how work was packed: a later run forms other chunks, and every record still counts.

The key is what determines the partition's content and nothing else: pipeline, partition, transform
fingerprint (explicit version + hash of the transform's code; Prefect's TASK_SOURCE sees neither),
the source partition's content (a digest of its files in the source's Delta log, so changed source
data misses) and the target's identity (its Delta table id, so a recreated target misses). Prefect's
default task cache keys include the flow run id, so a new run would never hit them. The flow serves a
record only where the target still has the partition: a partition deleted from the target is written
again, never "resumed".

Records are written through :class:`prefect.results.ResultStore` to ``BACKFILL_RESULT_STORAGE_PATH``
(a folder) or ``BACKFILL_RESULT_STORAGE_BLOCK`` (a saved storage block: shared storage for clusters).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from prefect.utilities.hashing import hash_objects

from prefect_backfill.results import PartitionResult
from prefect_backfill.settings import BackfillSettings
from prefect_backfill.storage import arrow_filesystem, on_object_store

__all__ = ["PartitionCache", "cache_key"]

logger = logging.getLogger(__name__)

#: Due partitions from which a run lists the cache's records rather than looking each one up.
LIST_FROM = 1_000


def cache_key(pipeline: str, partition: str, fingerprint: str, target_id: str, source_digest: str | None) -> str:
    """The record's name: readable prefix (records are files named by key), digest of the identity."""
    digest = hash_objects(
        {
            "pipeline": pipeline,
            "partition": partition,
            "fingerprint": fingerprint,
            "target_id": target_id,
            "source_digest": str(source_digest),
        },
        raise_on_failure=True,
    )
    return f"backfill-{pipeline}-{partition}-{digest}"


@dataclass
class PartitionCache:
    """Reads and writes partition records; picklable (the store is built lazily in each process)."""

    storage: Any  # a folder path or a block slug, as in settings.result_storage

    @classmethod
    def from_settings(cls, settings: BackfillSettings) -> PartitionCache:
        return cls(settings.result_storage)

    def __post_init__(self) -> None:
        self._store: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"storage": self.storage}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.storage = state["storage"]
        self._store = None

    @property
    def _where(self) -> str:
        """Where the records live: "store" (an s3a:// or s3:// path), "block" (a saved block's
        "block-type/name") or "folder"."""
        if isinstance(self.storage, str) and on_object_store(self.storage):
            return "store"
        if isinstance(self.storage, str) and "/" in self.storage and not self.storage.startswith("/"):
            return "block"
        return "folder"

    @property
    def store(self) -> Any:
        if self._store is None:
            from prefect.filesystems import LocalFileSystem, WritableFileSystem
            from prefect.results import ResultStore

            if self._where == "store":
                from prefect_backfill.result_storage import ObjectStoreResults

                block: Any = ObjectStoreResults(basepath=self.storage)
            elif self._where == "block":
                block = WritableFileSystem.load(self.storage)  # "block-type/name"
            else:
                block = LocalFileSystem(basepath=str(self.storage))
            self._store = ResultStore(result_storage=block)
        return self._store

    @staticmethod
    def worth_listing(due: int) -> bool:
        """Whether to list the storage before looking up ``due`` records: a listing reads every record's
        name (a request per 1,000 on a store, whatever pipeline wrote them), a lookup costs one each. From
        :data:`LIST_FROM` due partitions on, the listing is the cheaper one unless the storage holds more
        than a million records; below it, the lookups are few whatever the storage holds."""
        return due >= LIST_FROM

    def listing(self) -> frozenset[str] | None:
        """The name of every record in the storage, from one listing (a LIST per 1,000 names on an object
        store), so that a run looks up only the records that exist: asked name by name, a run over 43,848
        due hourly partitions checked 43,848 names before its first chunk (0.1 ms each on a local disk, a
        request each on a store). None where the storage cannot be listed (a saved block of another kind,
        or the listing failed): then every name is asked for, as before."""
        try:
            if self._where == "store":
                from pyarrow import fs

                filesystem, prefix = arrow_filesystem(self.storage)
                found = filesystem.get_file_info(fs.FileSelector(prefix, allow_not_found=True))
                return frozenset(PurePosixPath(info.path).name for info in found)
            if self._where == "folder":
                folder = Path(str(self.storage)).expanduser()
                return frozenset(os.listdir(folder)) if folder.is_dir() else frozenset()
        except Exception as exc:  # a listing only saves requests: without one, every name is asked for
            logger.warning("cache records not listed (%s): each partition's record is looked up", exc)
        return None

    def get(self, key: str) -> PartitionResult | None:
        """The record under ``key``, or None (absent, or unreadable: then the partition simply runs)."""
        try:
            if not self.store.exists(key):
                return None
            value = self.store.read(key).result
        except Exception as exc:  # a cache miss is always safe
            logger.warning("cache record %s unreadable (%s): the partition runs", key, exc)
            return None
        return value if isinstance(value, PartitionResult) else None

    def invalidate(self, key: str, why: str) -> bool:
        """Make the record under ``key`` unservable, by writing a tombstone (``why``, a string) over it:
        :meth:`get` serves only a :class:`PartitionResult`. A tombstone rather than a deletion, because
        Prefect's result storage (a folder or any storage block) can write but not delete. The next
        completed run of the partition writes a real record over it. False if it could not be written."""
        try:
            if not self.store.exists(key):
                return True
            self.store.write(why, key=key)
        except Exception as exc:
            logger.warning("cache record %s not invalidated (%s)", key, exc)
            return False
        return True

    def put(self, result: PartitionResult) -> None:
        """Write the record of a completed partition (best effort: a lost record costs a recompute)."""
        assert result.target_id is not None
        key = cache_key(result.pipeline, result.partition, result.fingerprint, result.target_id, result.source_digest)
        try:
            self.store.write(result, key=key)
        except Exception as exc:
            logger.warning("cache record %s not written (%s)", key, exc)
