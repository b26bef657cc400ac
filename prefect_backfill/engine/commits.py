"""Where a chunk's commit is found again: by the tag it carries in the Delta log (so a commit that landed
is known to have landed, whatever failed after it), and the digests of the files it wrote (what
``backfill audit`` later compares to see another writer's changes). Reads the log only: no Spark."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prefect_backfill.pipeline import Pipeline
from prefect_backfill.tables import read_snapshot

logger = logging.getLogger(__name__)

__all__ = ["committed_digests", "find_commit"]


def committed_digests(pipeline: Pipeline, keys: Sequence[str], version: int | None) -> dict[str, str]:
    """The digest of each of ``keys``' target files as of our commit ``version`` (what ``backfill audit``
    later compares with the table to see another writer's changes): one delta-rs log read per chunk, at
    that version, so a commit of another chunk meanwhile changes nothing. Path targets with a known
    version only; best effort: the chunk is committed already, and an unknown digest means "cannot tell"."""
    if version is None or not pipeline.target.is_path:
        return {}
    try:
        snapshot = read_snapshot(pipeline.target.location, pipeline.partition_column, pipeline.grain, version)
    except Exception as exc:
        logger.warning("target digests of %s at version %s not read (%s): drift cannot be told", keys, version, exc)
        return {}
    return {key: digest for key in keys if (digest := snapshot.digest(key)) is not None}


def find_commit(table_path: str, commit_tag: str, latest: int, look_back: int = 256) -> int | None:
    """The version whose ``_delta_log/<version>.json`` carries ``commit_tag`` as its userMetadata,
    searched from ``latest`` down (other chunks commit concurrently, so it need not be the latest)."""
    import json
    from pathlib import Path

    log = Path(table_path) / "_delta_log"
    for version in range(latest, max(-1, latest - look_back), -1):
        try:
            lines = (log / f"{version:020d}.json").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if '"commitInfo"' in line and json.loads(line).get("commitInfo", {}).get("userMetadata") == commit_tag:
                return version
    return None
