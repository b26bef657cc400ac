"""The bounds of a request's numbers, in one place: the request validates against them (flow parameters,
deployments) and the CLI's options show and enforce the same ones in ``--help``."""

from __future__ import annotations

__all__ = ["MAX_CANARY", "MAX_CHUNK_PARTITIONS", "MAX_RETRIES"]

#: Retries per partition: beyond this a failure is not transient.
MAX_RETRIES = 20
#: Partitions in one chunk (one Spark job, one commit): the predicate of a bigger one gets unwieldy.
MAX_CHUNK_PARTITIONS = 10_000
#: Canary partitions written before the gate.
MAX_CANARY = 100
