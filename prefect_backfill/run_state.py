"""Crashed means stopped: a run whose flow run Prefect has ended stops writing.

On a Prefect server, the zombie automation marks a run Crashed after 90 s without heartbeats, and an
operator can cancel a run whose worker is gone. If the process is in fact alive (a network partition, a
stalled heartbeat thread), it would go on writing while the UI says it is over and a next run is
started in its place. So while a run works it reads its own flow run's state every
``BACKFILL_STATE_POLL_SECONDS`` (15 s); when the server says Crashed, Cancelling, Cancelled or Failed, it
stops as on a signal (:func:`prefect_backfill.stopping.request_stop`): no new chunk, the Spark jobs in
flight cancelled, their partitions PENDING. Only against a Prefect server (``PREFECT_API_URL``): on the
embedded one nobody else changes a run's state.

The other half is :func:`heartbeats`: every backfill flow run beats often enough for that automation's
window, however it is started (a worker's env from prefect.yaml, or ``backfill run`` in a shell against
the same server), so a run that is working is never the one it marks Crashed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect_backfill import stopping

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

__all__ = [
    "ENDED",
    "FLOW_ENTRYPOINT",
    "FLOW_NAME",
    "HEARTBEAT_SECONDS",
    "ServerSideEnd",
    "failed_by_server",
    "heartbeats",
    "load_flow",
]

logger = logging.getLogger(__name__)

#: The backfill flow's name in Prefect: what the zombie automation matches, so it never touches other flows.
FLOW_NAME = "backfill"
#: Where the flow lives, as prefect.yaml's deployments name it (``flows/backfill.py:backfill``): the CLI
#: loads it from there by name, as a worker does, so the core never imports the flows package.
FLOW_ENTRYPOINT = "flows/backfill.py:backfill"


def load_flow() -> Any:
    """The backfill flow, loaded the way a worker loads a deployment's entrypoint (by module and name)."""
    import importlib

    path, name = FLOW_ENTRYPOINT.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


#: Seconds between a backfill flow run's heartbeats: three per window of the zombie automation (90 s by
#: default, deployments/setup.py). Prefect's own default (180 s) is longer than that window, so a run left
#: at it is marked Crashed after ~90 s while it works. Prefect's minimum is 30 s.
HEARTBEAT_SECONDS = 30


@contextlib.contextmanager
def heartbeats() -> Iterator[None]:
    """Inside: flow runs started in this process beat every :data:`HEARTBEAT_SECONDS` (or faster, if
    the user set that). Prefect reads the cadence when the flow run starts, so the caller of the flow
    wraps the call; deployed runs get the same value from prefect.yaml's job variables."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    configured = get_current_settings().flows.heartbeat_frequency
    if configured is not None and configured <= HEARTBEAT_SECONDS:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
        yield


def failed_by_server(state: State[Any]) -> bool:
    """Whether ``state`` is a Failed the flow did not make itself: the flow's own failures carry their
    error as the state's data; a Failed the server set (its pause-expiration service, or its refusal of
    the flow's next state once a pause timed out) carries none. For a run paused at the canary gate,
    that is the typed mark of a pause nobody answered in time."""
    return state.is_failed() and state.data is None


#: Flow-run state types that mean "this run is over" when the run itself did not say so.
ENDED = frozenset({"CRASHED", "CANCELLING", "CANCELLED", "FAILED"})


class ServerSideEnd:
    """While inside: a thread that stops the run when its flow run's state on the server is in ``ENDED``."""

    def __init__(self, flow_run_id: str | None, every: float) -> None:
        from prefect.settings import get_current_settings

        from prefect_backfill.embedded import serving

        # A server the user runs (its automations and its UI can end a run); not this CLI's embedded one
        self.flow_run_id = flow_run_id if flow_run_id and get_current_settings().api.url and not serving() else None
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ServerSideEnd:
        if self.flow_run_id is not None:
            self._thread = threading.Thread(target=self._watch, name="backfill-run-state", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        assert self.flow_run_id is not None
        while not self._stop.wait(self.every):
            try:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(UUID(self.flow_run_id)).state
            except Exception as exc:  # the server is unreachable: the heartbeat's problem, not ours to decide
                logger.debug("could not read the state of flow run %s: %s", self.flow_run_id, exc)
                continue
            if state is not None and state.type.value in ENDED:
                name = state.name or state.type.value.title()
                stopping.request_stop(name, f"the flow run was marked {name} on the Prefect server")
                return
