"""A chunk's Spark work, tagged so that another thread can cancel it, and untagged whatever happens.

On classic Spark a job tag (``SparkContext.addJobTag``) plus the job's local properties (description,
FAIR pool); on Spark Connect an operation tag (``SparkSession.addTag``) and no local properties. Tags
and properties belong to the calling thread: a thread goes back to the pool clean, or the next chunk it
runs would be cancelled with this one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prefect_backfill.engine.spark import is_remote

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["tagged", "tidying"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def tagged(spark: SparkSession, tags: Sequence[str], properties: Mapping[str, str] | None = None) -> Iterator[None]:
    """This thread's Spark work inside the block carries ``tags`` (and, on classic Spark, ``properties``)."""
    sc = None if is_remote(spark) else spark.sparkContext
    properties = properties or {}
    try:
        for tag in tags:
            if sc is None:
                spark.addTag(tag)
            else:
                sc.addJobTag(tag)
        if sc is not None:
            for key, value in properties.items():
                sc.setLocalProperty(key, value)
        yield
    finally:
        with tidying("clear the job tags"):
            for tag in tags:
                if sc is None:
                    spark.removeTag(tag)  # a no-op if it was never added
                else:
                    sc.removeJobTag(tag)
            if sc is not None:
                for key in properties:
                    sc.setLocalProperty(key, None)  # type: ignore[arg-type]


@contextlib.contextmanager
def tidying(what: str) -> Iterator[None]:
    """Clean-up after a chunk's work never fails it: a failure here means the JVM is gone, and raised from
    a ``finally`` it would hide the chunk's own error, or turn a commit that landed into a failure."""
    try:
        yield
    except Exception as exc:
        logger.debug("could not %s: %s", what, exc)
