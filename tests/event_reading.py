"""Read a pipeline's backfill events back from a Prefect server, through the API the UI's event feed uses
(``POST /events/filter``, then its ``next_page`` links). The server stores events in batches (a lone
event can take ~5 s to appear), so readers wait until what they expect is there."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prefect.events.schemas.events import ReceivedEvent

from prefect_backfill.events import pipeline_resource_id


def read_backfill_events(pipeline: str, since: datetime, api_url: str | None = None) -> list[ReceivedEvent]:
    """Every ``prefect-backfill.*`` event that involves ``pipeline`` since ``since``, oldest first, from
    ``api_url`` (default: the current Prefect settings' API, e.g. the test harness's)."""
    from prefect.settings import PREFECT_API_URL

    url = api_url or PREFECT_API_URL.value()
    assert url, "no Prefect API to read events from"
    query = {
        "filter": {
            "occurred": {
                "since": (since - timedelta(seconds=5)).isoformat(),
                "until": (datetime.now(UTC) + timedelta(seconds=5)).isoformat(),
            },
            "event": {"prefix": ["prefect-backfill."]},
            "any_resource": {"id": [pipeline_resource_id(pipeline)]},
        },
        "limit": 50,  # the most the API returns per page
    }
    page = httpx.post(f"{url}/events/filter", json=query, timeout=10).raise_for_status().json()
    found = list(page["events"])
    while page.get("next_page"):
        page = httpx.get(page["next_page"], timeout=10).raise_for_status().json()
        found.extend(page["events"])
    return sorted((ReceivedEvent.model_validate(e) for e in found), key=lambda e: e.occurred)


def wait_for_events(
    pipeline: str,
    since: datetime,
    done: Callable[[list[ReceivedEvent]], bool],
    timeout: float = 30.0,
    api_url: str | None = None,
) -> list[ReceivedEvent]:
    """Poll until ``done(events)`` holds (returns them) or ``timeout`` passes (returns what was there)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_backfill_events(pipeline, since, api_url)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
