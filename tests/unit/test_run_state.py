"""Heartbeats and the zombie automation agree: backfill runs beat faster than its window, and the
automation only ever crashes backfill flow runs (never the user's other flows on the same server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

from deployments.setup import zombie_automation
from prefect_backfill.run_state import FLOW_NAME, HEARTBEAT_SECONDS, heartbeats


def test_runs_started_inside_beat_at_least_every_30_s_and_the_setting_is_restored() -> None:
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):  # Prefect's default
        with heartbeats():
            assert get_current_settings().flows.heartbeat_frequency == HEARTBEAT_SECONDS
        assert get_current_settings().flows.heartbeat_frequency == 180


def test_heartbeats_beat_three_times_per_default_zombie_window() -> None:
    trigger = zombie_automation(90).trigger
    assert trigger.within.total_seconds() >= 3 * HEARTBEAT_SECONDS  # type: ignore[attr-defined]


def _heartbeat(flow_name: str) -> ReceivedEvent:
    run = uuid4()
    related: list[dict[str, Any]] = [
        {
            "prefect.resource.id": f"prefect.flow.{uuid4()}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow_name,
        }
    ]
    return ReceivedEvent(
        event="prefect.flow-run.heartbeat",
        resource={"prefect.resource.id": f"prefect.flow-run.{run}", "prefect.resource.name": "some-run"},
        related=related,
        id=uuid4(),
        occurred=datetime.now(UTC),
    )


def test_the_zombie_automation_watches_backfill_runs_only() -> None:
    """Judged by Prefect's own server-side matching: the user's daily flow, beating at Prefect's default
    180 s on the same server, must never be marked Crashed by this project's set-up."""
    trigger = ServerEventTrigger.model_validate(zombie_automation(90).trigger.model_dump())
    assert trigger.covers(_heartbeat(FLOW_NAME))
    assert not trigger.covers(_heartbeat("daily-orders"))
