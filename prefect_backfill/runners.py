"""The flow's task runner, chosen by settings (``BACKFILL_TASK_RUNNER``), never by code changes.

- ``thread`` (default): a bounded thread pool in the flow's process, all partitions sharing its one
  Spark session (the cheapest: ~6 ms of orchestration per partition).
- ``dask``: a Dask cluster, either an existing scheduler (``BACKFILL_DASK_ADDRESS``) or a local cluster
  of ``BACKFILL_DASK_WORKERS`` processes. Each worker process creates its own Spark session lazily on its
  first partition (a local JVM per worker, or a client of ``BACKFILL_SPARK_MASTER`` /
  ``BACKFILL_SPARK_REMOTE``). Tasks report to the flow's Prefect API and write their cache records to
  ``BACKFILL_RESULT_STORAGE_PATH`` / ``_BLOCK``: on a real cluster both must be shared.

The run's ``max_concurrency`` bounds partitions in flight either way (orchestrate.py): the runner only
decides *where* they run.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from prefect_backfill.settings import BackfillSettings

__all__ = ["BackfillDaskTaskRunner", "task_runner"]


def task_runner(settings: BackfillSettings) -> TaskRunner[Any]:
    """The task runner ``settings`` ask for (constructed lazily: no cluster starts until a task is submitted)."""
    if settings.task_runner == "dask":
        if settings.dask_address:
            return BackfillDaskTaskRunner(address=settings.dask_address)
        return BackfillDaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": settings.dask_threads_per_worker,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)


def _dask_runner_class() -> type[Any]:
    from prefect_dask.task_runners import DaskTaskRunner

    return DaskTaskRunner


class BackfillDaskTaskRunner(_dask_runner_class()):  # type: ignore[misc]
    """prefect-dask's runner, plus one thing: local worker processes inherit this process's Prefect API.

    Without ``PREFECT_API_URL`` in their environment, each Dask worker process would start its own
    temporary Prefect server (three servers and 1.3 GB were seen), and the task runs would be reported
    to servers nobody looks at. So before the local cluster spawns its workers, the API this flow talks
    to, embedded or not, is exported (and restored afterwards).
    """

    @property
    def client(self) -> Any:
        if self._client or self.address or self._cluster:
            return super().client
        saved = os.environ.get("PREFECT_API_URL")
        if not saved:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as api:
                os.environ["PREFECT_API_URL"] = str(api.api_url).rstrip("/")
        try:
            return super().client
        finally:
            if not saved:
                os.environ.pop("PREFECT_API_URL", None)
