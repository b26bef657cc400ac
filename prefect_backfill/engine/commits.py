"""Where a chunk's commit is found again: by the tag it carries in the Delta log (so a commit that landed
is known to have landed, whatever failed after it), and the digests of the files it wrote (what
``backfill audit`` later compares to see another writer's changes). Reads the log only: no Spark."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from prefect_backfill.pipeline import Pipeline
from prefect_backfill.snapshots import TableSnapshot
from prefect_backfill.storage import delta_options, read_text
from prefect_backfill.tables import read_snapshot

logger = logging.getLogger(__name__)

__all__ = [
    "commit_version",
    "committed_digests",
    "committed_rows",
    "committed_snapshot",
    "find_commit",
    "landed_version",
    "written_rows",
]


def committed_snapshot(pipeline: Pipeline, keys: Sequence[str], version: int | None) -> TableSnapshot | None:
    """The target as of our commit ``version``: one delta-rs log read per chunk, at that version, so a
    commit of another chunk meanwhile changes nothing. Path targets with a known version only; best
    effort: the chunk is committed already, and None means "cannot tell"."""
    if version is None or pipeline.target.path is None:
        return None
    try:
        return read_snapshot(pipeline.target.path, pipeline.partition_column, pipeline.grain, version)
    except Exception as exc:
        logger.warning("target digests of %s at version %s not read (%s): drift cannot be told", keys, version, exc)
        return None


def committed_digests(snapshot: TableSnapshot | None, keys: Sequence[str]) -> dict[str, str]:
    """The digest of each of ``keys``' target files in ``snapshot`` (what ``backfill audit`` later compares
    with the table to see another writer's changes); a key without one is left out ("cannot tell")."""
    if snapshot is None:
        return {}
    return {key: digest for key in keys if (digest := snapshot.digest(key)) is not None}


def committed_rows(snapshot: TableSnapshot | None, keys: Sequence[str]) -> dict[str, int] | None:
    """The rows our commit wrote to each of ``keys``, from its files' statistics; None where any is not
    known (files written without statistics, an unreadable log, a target not partitioned by the column)."""
    if snapshot is None or not snapshot.known:
        return None
    rows: dict[str, int] = {}
    for key in keys:
        files = snapshot.partitions.get(key)
        if files is not None and files.num_records is None:
            return None
        rows[key] = (files.num_records or 0) if files is not None else 0
    return rows


def written_rows(
    pipeline: Pipeline, span: str, counted: Mapping[str, int], written: Mapping[str, int] | None
) -> dict[str, int]:
    """The rows per partition the ledger records: what the commit ``written`` (from its files' statistics)
    where known, else what the count pass ``counted``. They differ only for a transform whose rows change
    from one computation to the next (the write computes it again unless the output is cached, and a lost
    cache block is computed again too): said once, as a warning."""
    if written is None or all(written.get(k) == n for k, n in counted.items()):
        return dict(counted)
    logger.warning(
        "%s %s: the commit wrote other rows than the checks counted (%s): the transform is not "
        "deterministic; the ledger records what was written. Set cache_output=True on the pipeline "
        "to check and write the very same rows",
        pipeline.name,
        span,
        ", ".join(f"{k}: {n} counted, {written.get(k)} written" for k, n in counted.items() if written.get(k) != n),
    )
    return {k: written.get(k, 0) for k in counted}


def find_commit(table_path: str, commit_tag: str, latest: int, look_back: int = 256) -> int | None:
    """The version whose ``_delta_log/<version>.json`` carries ``commit_tag`` as its userMetadata,
    searched from ``latest`` down (other chunks commit concurrently, so it need not be the latest).
    The commit files themselves, on the local disk or the object store: exact, where delta-rs history
    labels can be one version too low when commits race."""
    import json

    log = f"{table_path.rstrip('/')}/_delta_log"
    for version in range(latest, max(-1, latest - look_back), -1):
        text = read_text(f"{log}/{version:020d}.json")
        if text is None:
            continue
        for line in text.splitlines():
            if '"commitInfo"' in line and json.loads(line).get("commitInfo", {}).get("userMetadata") == commit_tag:
                return version
    return None


def commit_version(pipeline: Pipeline, commit_tag: str) -> int | None:
    """The Delta version our commit created, found by its userMetadata (other partitions commit
    concurrently, so "the latest version" would be a race). Path targets and catalog targets whose storage
    is known (:mod:`prefect_backfill.catalog`): delta-rs reads the log in milliseconds; through Spark this
    would cost a job per partition."""
    location = pipeline.target.path
    if location is None:
        return None
    from deltalake import DeltaTable

    latest = DeltaTable(location, storage_options=delta_options(location)).version()
    return find_commit(location, commit_tag, latest)


def landed_version(pipeline: Pipeline, commit_tag: str) -> int | None:
    """The version of our commit if it is in the target's log (path targets: delta-rs, no JVM), else None:
    the evidence that a commit landed even when what follows it failed."""
    try:
        return commit_version(pipeline, commit_tag)
    except Exception:  # no table, an unreadable log: no evidence of a commit
        return None
