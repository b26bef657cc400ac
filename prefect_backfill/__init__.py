"""prefect-backfill: reprocess date-partitioned Delta tables partition by partition with Prefect.

Core package: planning (pure), the progress ledger, the engine (Spark + Delta), pipeline registry,
settings and the CLI. Flows live in ``flows/``, tasks in ``tasks/``.
"""

from prefect_backfill.checks import Custom, Expect, NotNull, RowRatio, Unique
from prefect_backfill.errors import BackfillError
from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import Plan, Reprocess, Status
from prefect_backfill.registry import get_pipeline, register

__all__ = [
    "BackfillError",
    "Custom",
    "Expect",
    "Grain",
    "NotNull",
    "Partition",
    "Pipeline",
    "Plan",
    "Reprocess",
    "RowRatio",
    "Status",
    "TableRef",
    "Unique",
    "get_pipeline",
    "register",
]
__version__ = "0.1.0"
