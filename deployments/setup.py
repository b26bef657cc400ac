"""Create what the deployments in prefect.yaml run on, idempotently: `python -m deployments.setup`.

- work pool ``backfill`` (process) with queue ``backfill``: backfills run here, on their own workers,
  so they never take a slot the daily pipeline needs; pause the whole pool to stop all backfills;
- work pool ``daily`` (process) with queue ``daily`` at the highest priority;
- for every registered pipeline, the global concurrency limit ``backfill-<pipeline>``: its value is the
  pipeline's cap (chunks in flight across all its runs). Runs read the value; the slots themselves
  and the one-writer-per-partition claims are leases beside the ledger (prefect_backfill.leases), so a
  killed run frees them on any server, the embedded one included;
- two automations: runs whose heartbeats stop are marked Crashed, and a backfill deployment whose run
  fails a check before commit is paused (its schedule stops) until someone resumes it.

Running this again changes nothing but what differs (a new cap, a new pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate, WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.workers.process import ProcessWorker

from prefect_backfill.coordination import cap_name
from prefect_backfill.registry import all_pipelines
from prefect_backfill.run_state import FLOW_NAME


@dataclass(frozen=True)
class Lane:
    pool: str
    queue: str
    priority: int
    description: str


LANES = (
    Lane("daily", "daily", 1, "The daily pipeline: yesterday's partitions. Highest priority."),
    Lane("backfill", "backfill", 10, "Backfills: partition by partition, nights only, never in the daily pool."),
)


async def ensure_lane(lane: Lane) -> str:
    async with get_client() as client:
        try:
            await client.read_work_pool(lane.pool)
            pool_note = "exists"
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=lane.pool,
                    type="process",
                    description=lane.description,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            pool_note = "created"
        try:
            queue = await client.read_work_queue_by_name(lane.queue, work_pool_name=lane.pool)
            if queue.priority != lane.priority:
                await client.update_work_queue(queue.id, priority=lane.priority)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_queue(lane.queue, work_pool_name=lane.pool, priority=lane.priority)
    return f"pool {lane.pool} ({pool_note}), queue {lane.queue} priority {lane.priority}"


async def ensure_limit(name: str, limit: int) -> str:
    async with get_client() as client:
        try:
            current = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return f"limit {name} = {limit} (created)"
        if current.limit != limit:
            await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit))
            return f"limit {name} = {limit} (was {current.limit})"
        return f"limit {name} = {limit}"


ZOMBIE_AUTOMATION = "prefect-backfill: crash unresponsive flow runs"


def zombie_automation(within_seconds: int) -> Automation:
    """Mark a backfill flow run Crashed when its heartbeats stop (a killed worker or machine).

    Only the backfill flow's runs (matched by the flow's name): the user's other flows on this server
    beat at Prefect's default 180 s, longer than this window, and must never be crashed by our set-up.

    Without it, a SIGKILLed run stays Running forever in the UI and keeps its deployment concurrency
    slot (the next nightly run would queue behind it). Its partitions and cap slots do not depend on
    this: they are freed by its lease (prefect_backfill.leases). Flow runs send heartbeats when
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set (prefect.yaml sets it for the backfill deployments) and
    every 180 s otherwise; `backfill run` sets it for its own runs (prefect_backfill.run_state.heartbeats).
    """
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"No heartbeat for {within_seconds} s: the run's process is gone."
            )
        ],
    )


async def ensure_zombie_automation(within_seconds: int) -> str:
    """Install :func:`zombie_automation` (replacing one installed before; 0 removes it)."""
    async with get_client() as client:
        for existing in await client.read_automations_by_name(ZOMBIE_AUTOMATION):
            await client.delete_automation(existing.id)  # replace: the window may have changed
    if within_seconds <= 0:
        return f"automation {ZOMBIE_AUTOMATION!r}: off"
    await zombie_automation(within_seconds).acreate()
    return f"automation {ZOMBIE_AUTOMATION!r}: no heartbeat for {within_seconds} s -> Crashed"


CHECK_PAUSE_AUTOMATION = "prefect-backfill: pause a backfill deployment when a partition fails a check"


async def ensure_check_pause_automation(enabled: bool) -> str:
    """Pause the deployment of a backfill run in which a partition failed a check before commit.

    A failed check means the transform (or its input) is wrong, and the partition kept its old rows. A
    paused deployment's schedule creates no more runs (Prefect deletes its scheduled ones), so a wrong
    transform does not rewrite the next night's partitions, nor fail them again, night after night, until
    someone has looked and resumes it (README, "Events and automations"). Runs already going finish;
    manual runs (`prefect deployment run`) still work, so a fixed version can be tried at once.

    Built on ``prefect-backfill.partition.check-failed`` (:mod:`prefect_backfill.events`): Prefect relates
    the event to the run's deployment and tags, so the action infers the deployment from the event, and
    the trigger only fires for runs of deployments tagged ``backfill`` (the daily pipeline keeps its
    schedule: tomorrow's partition is new data, not a rewrite).
    """
    from prefect.automations import Automation
    from prefect.events.actions import PauseDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    from prefect_backfill.events import CHECK_FAILED

    async with get_client() as client:
        for existing in await client.read_automations_by_name(CHECK_PAUSE_AUTOMATION):
            await client.delete_automation(existing.id)
    if not enabled:
        return f"automation {CHECK_PAUSE_AUTOMATION!r}: off"
    automation = Automation(
        name=CHECK_PAUSE_AUTOMATION,
        description="A partition failed a check before commit: stop the schedule until someone has looked.",
        trigger=EventTrigger(
            expect={CHECK_FAILED},
            match=ResourceSpecification({"prefect.resource.id": "prefect-backfill.partition.*"}),
            match_related=[
                ResourceSpecification({"prefect.resource.role": "deployment"}),
                ResourceSpecification({"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.backfill"}),
            ],
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[PauseDeployment(source="inferred")],
    )
    await automation.acreate()
    return f"automation {CHECK_PAUSE_AUTOMATION!r}: {CHECK_FAILED} in a backfill deployment's run -> pause it"


async def resume_deployment(name: str) -> str:
    """Resume a paused deployment (``flow/deployment``), e.g. after the check-pause automation."""
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise LookupError(f"no deployment {name!r}: name it as flow/deployment (prefect deployment ls)") from None
        await client.resume_deployment(deployment.id)
    return f"deployment {name}: resumed (its schedule creates runs again)"


async def setup(cap: int, zombie_after: int = 90, pause_on_check: bool = True) -> list[str]:
    lines = [await ensure_lane(lane) for lane in LANES]
    lines.append(await ensure_zombie_automation(zombie_after))
    lines.append(await ensure_check_pause_automation(pause_on_check))
    for pipeline in all_pipelines():
        lines.append(await ensure_limit(cap_name(pipeline.name), cap))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cap", type=int, default=4, help="partitions in flight per pipeline, all runs together")
    parser.add_argument(
        "--zombie-after", type=int, default=90, help="seconds without heartbeat before Crashed (0: off)"
    )
    parser.add_argument(
        "--no-pause-on-check",
        dest="pause_on_check",
        action="store_false",
        help="do not install the automation that pauses a backfill deployment when a partition fails a check",
    )
    parser.add_argument(
        "--resume", metavar="FLOW/DEPLOYMENT", help="only resume this paused deployment (e.g. backfill/demo-orders)"
    )
    args = parser.parse_args(argv)
    if args.resume:
        try:
            print(asyncio.run(resume_deployment(args.resume)))
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    for line in asyncio.run(setup(args.cap, args.zombie_after, args.pause_on_check)):
        print(line)


if __name__ == "__main__":
    main()
