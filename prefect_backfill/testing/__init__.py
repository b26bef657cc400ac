"""Fakes shared by the tests and the benchmarks (``bench/``): engines that do no data work, and the
pipelines they run.

They live in the package, not in ``tests/`` or ``bench/``, so that both can import them without importing
each other, and so that any process the package starts can load them by name alone (a Dask worker, the
``backfill`` CLI in a subprocess): ``BACKFILL_ENGINE=prefect_backfill.testing:SleepEngine`` and
``BACKFILL_PIPELINE_MODULES=prefect_backfill.testing.pipelines``. Importing this package registers nothing;
importing :mod:`prefect_backfill.testing.pipelines` registers the no-op pipelines.
"""

from prefect_backfill.testing.engines import PerPartitionLimitEngine, SleepEngine

__all__ = ["PerPartitionLimitEngine", "SleepEngine"]
