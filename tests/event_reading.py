"""Read a pipeline's backfill events back from a Prefect server, through the API the UI's event feed uses
(``POST /events/filter``). The server stores events in batches (a lone event can take ~5 s to appear),
so readers wait until what they expect is there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.schemas.events import ReceivedEvent

from prefect_backfill.events import pipeline_resource_id


async def read_backfill_events(pipeline: str, since: datetime) -> list[ReceivedEvent]:
    """Every ``prefect-backfill.*`` event that involves ``pipeline`` since ``since``, oldest first."""
    from prefect.client.orchestration import get_client

    found: list[ReceivedEvent] = []
    query = EventFilter(
        occurred=EventOccurredFilter(since=since - timedelta(seconds=5), until=datetime.now().astimezone()),
        event=EventNameFilter(prefix=["prefect-backfill."]),
        any_resource=EventAnyResourceFilter(id=[pipeline_resource_id(pipeline)]),
    )
    async with get_client() as client:
        page = await client.read_events(filter=query, limit=50)  # the most the API returns per page
        found.extend(page.events)
        while page.next_page is not None:
            page = await client.read_events_page(str(page.next_page))
            found.extend(page.events)
    return sorted(found, key=lambda e: e.occurred)


def wait_for_events(
    pipeline: str, since: datetime, done: Callable[[list[ReceivedEvent]], bool], timeout: float = 30.0
) -> list[ReceivedEvent]:
    """Poll until ``done(events)`` holds (returns them) or ``timeout`` passes (returns what was there)."""
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read_backfill_events(pipeline, since))
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
