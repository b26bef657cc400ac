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

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask.task_runners import DaskTaskRunner

from prefect_backfill.settings import BackfillSettings

__all__ = ["BackfillDaskTaskRunner", "task_runner"]


def task_runner(settings: BackfillSettings, api_url: str | None = None) -> TaskRunner[Any]:
    """The task runner ``settings`` ask for, chosen when a run starts (never at import).

    ``api_url``: the Prefect API the run reports to. A local Dask cluster's worker processes get it in
    their environment (the nanny's ``env``): without it, each would start a temporary Prefect server of
    its own (three servers and 1.3 GB were seen) and report task runs to servers nobody looks at. This
    process's environment is never changed for it."""
    if settings.task_runner == "dask":
        if settings.dask_address:
            return BackfillDaskTaskRunner(address=settings.dask_address)
        return BackfillDaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": settings.dask_threads_per_worker,
                "processes": True,
                "dashboard_address": None,
                "env": {"PREFECT_API_URL": api_url} if api_url else {},
            }
        )
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)


class BackfillDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's runner, made per run by :func:`task_runner` (its local cluster's workers report to the
    run's Prefect API). A class of its own so that a run's runner is recognisable in logs and tests."""
