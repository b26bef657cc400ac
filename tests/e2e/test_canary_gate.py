"""The canary gate as a deployment user meets it: a real `prefect server start`, `prefect deploy` from
prefect.yaml with the automations at their defaults, a real process worker, and a reviewer clicking in
the Prefect UI (headless Chromium). A run with `canary: 1` writes its canary and pauses with the form on
its page: the form says what the canaries changed; a bare Submit decides nothing; the run stays Paused
past the zombie automation's window; approve writes the rest; reject stops the run, Failed with the
note, canary written and the rest not."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.conftest import Server, stop_group
from tests.e2e.test_deployments import BIN, cli, start_worker, trigger, wait_final
from tests.e2e.test_events import write_bronze
from tests.e2e.test_ui import CHROMIUM

pytestmark = pytest.mark.e2e

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def wait_paused(server: Server, flow_run_id: str, worker_log: Path, timeout: float = 300) -> dict[str, Any]:
    """The run, once Paused. ``timeout`` bounds a hang, not the speed: the run's process starts Python,
    Prefect and a JVM on a machine the other test workers keep busy. A run that never pauses says what it
    was doing (its state and the worker's log), not only that it did not pause."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        if run["state_type"] == "PAUSED":
            return run
        assert run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), run["state"]
        time.sleep(0.5)
    state = run.get("state") or {}
    raise AssertionError(
        f"flow run {flow_run_id} did not pause at the canary gate within {timeout} s: it is "
        f"{state.get('name')} ({state.get('message')}); the worker's log ends with:\n"
        + worker_log.read_text(errors="replace")[-3000:]
    )


def answer(server: Server, flow_run_id: str, approve: bool, note: str = "") -> None:
    """The call the UI's form makes (POST /flow_runs/{id}/resume with the run input), again while the
    server answers 503 "busy", as Prefect's own client does (SQLite under a flow run's writes)."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(
            f"{server.api_url}/flow_runs/{flow_run_id}/resume",
            json={"run_input": {"decision": "approve" if approve else "reject", "note": note}},
            timeout=10,
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.status_code in (200, 201), response.text
    assert response.json()["status"] == "ACCEPT", response.text


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    """Headless Chromium (Debian's package) driven by Playwright, as tests/e2e/test_ui.py does."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make browser` installs Debian's package")
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-quic"]
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def open_the_form(page: Any, server: Server, flow_run_id: str) -> Any:
    """On the paused flow run's page: Resume → the form's dialog."""
    page.goto(f"{server.url}/runs/flow-run/{flow_run_id}", wait_until="networkidle")
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Resume Flow Run").wait_for(timeout=30_000)
    return dialog


def leave(page: Any, server: Server | None = None, flow_run_id: str | None = None) -> None:
    """Leave the run's page for a blank one (once the run has left Paused, if a run is given: the form's
    request must not be cut off). The UI's run page keeps polling and repainting: a tab left on it for
    this test's waits cost ~170 s of CPU, in a suite that is CPU-bound on two cores."""
    # A hang bound, not a speed: on a loaded machine (load 8 on two cores) an answer was seen still in flight
    # after 60 s. If it never arrives, say what the page shows (a refusal on the form, or the form still open).
    deadline = time.monotonic() + 180
    while flow_run_id is not None and server is not None:
        state = httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()["state_type"]
        if state != "PAUSED":
            break
        if time.monotonic() > deadline:
            shown = page.locator("body").inner_text()[-1500:]
            raise AssertionError(f"the answer did not reach flow run {flow_run_id}: still Paused; page:\n{shown}")
        time.sleep(0.5)
    page.goto("about:blank")


def click_decision(page: Any, dialog: Any, decision: str | None, note: str = "") -> None:
    """Choose in the Decision select (None: leave it empty), type the note, Submit.

    With a decision, the form's answer is the UI's POST /flow_runs/{id}/resume. A server busy under the
    other runs' writes answers 503 (Prefect's "try again": SQLite's lock timed out, nothing was stored),
    the page says "Something went wrong" and the form stays open: the reviewer presses Submit again, and so
    does this test, a few times. Any other refusal fails here, with what the server said."""
    if decision is not None:
        dialog.locator(".schema-form-property-string.p-select button").focus()
        page.keyboard.press("ArrowDown")  # opens the select's options (a click toggles it open and shut)
        page.locator("[role=option]").filter(has_text=decision).click()
    if note:
        dialog.locator("textarea").fill(note)
    submit = dialog.get_by_role("button", name="Submit")
    if decision is None:
        submit.click()
        return

    def is_resume(response: Any) -> bool:
        return bool(response.request.method == "POST" and response.url.endswith("/resume"))

    for _ in range(5):
        # A hang bound: on a loaded machine an answer was seen still in flight after 60 s.
        with page.expect_response(is_resume, timeout=180_000) as answered:
            submit.click()
        response = answered.value
        if response.status != 503:
            break
        time.sleep(2)
    assert response.status in (200, 201), f"the form's answer was refused: {response.status} {response.text()}"
    assert response.json()["status"] == "ACCEPT", response.text()


def state_history(server: Server, flow_run_id: str) -> list[str]:
    states = httpx.get(f"{server.api_url}/flow_run_states/", params={"flow_run_id": flow_run_id}, timeout=10)
    assert states.status_code == 200, states.text
    return [s["type"] for s in states.json()]


@pytest.mark.timeout(900)  # a hang bound: paused 240 s on purpose, then two runs; it took 441 s on a busy machine
def test_the_gate_is_answered_on_the_flow_run_page_approve_then_reject(prefect_server: Server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_bronze(data / "lake" / "bronze" / "orders", DAYS, rows_per_day=20)
    env = {
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_CANARY_POLL_SECONDS": "1",
    }
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)  # pools
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    ledger = Ledger(data / "lake" / "silver" / "_backfill_progress")
    worker = start_worker(prefect_server, env, tmp_path / "worker.log")
    try:
        params: dict[str, Any] = {"start": DAYS[0], "end": DAYS[-1], "window_end": None, "retries": 0, "canary": 1}
        approved = trigger(prefect_server, env, params)
        paused = wait_paused(prefect_server, approved, tmp_path / "worker.log")
        assert paused["state"]["state_details"]["run_input_keyset"], "no approval form on the paused run"
        # Paused after its canary (the middle day) only: the rest waits for the answer.
        assert {k: s.status for k, s in ledger.current("demo_orders").items()}["2024-01-02"] is Status.COMPLETE
        assert sum(s.status is Status.COMPLETE for s in ledger.current("demo_orders").values()) == 1
        with browser_page() as page:
            dialog = open_the_form(page, prefect_server, approved)
            form = dialog.inner_text()
            # The form says what is decided: the canary's rows and changed sums, the total, what waits.
            assert "demo_orders: 1 canary partition(s) written, 2 more wait for this decision." in form, form
            assert "2024-01-02" in form and "total" in form and "amount_usd" in form, form
            assert "approve writes the other 2 partition(s)" in form, form
            link = dialog.get_by_role("link", name="canary diff artifact").get_attribute("href")
            assert link and link.startswith(f"{prefect_server.url}/artifacts/artifact/"), link
            artifact = httpx.get(f"{prefect_server.api_url}/artifacts/{link.rsplit('/', 1)[1]}", timeout=10).json()
            assert artifact["key"] == "backfill-demo-orders-canary", artifact
            # A bare Submit decides nothing: refused on the form, the run stays paused.
            click_decision(page, dialog, None)
            dialog.get_by_text("'decision' is a required property").wait_for(timeout=10_000)
            leave(page)
            # Paused longer than the zombie automation's 90 s window (as `make deployments` installs it) and
            # past 240 s after the start, when Prefect renews a deployment concurrency lease (a deployment
            # with a concurrency_limit had its paused run killed there): still Paused, still answerable.
            started = datetime.fromisoformat(paused["start_time"])
            while (datetime.now(UTC) - started).total_seconds() < 240:
                time.sleep(5)
                state = httpx.get(f"{prefect_server.api_url}/flow_runs/{approved}", timeout=10).json()["state_type"]
                assert state == "PAUSED", state
            dialog = open_the_form(page, prefect_server, approved)
            click_decision(page, dialog, "approve", "looks right")
            leave(page, prefect_server, approved)
            run = wait_final(prefect_server, approved)  # the suite's hang bound: 420 s
            assert run["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
            assert "CRASHED" not in state_history(prefect_server, approved)
            states = ledger.current("demo_orders")
            # Seen once under a loaded full run (a partition FAILED in a COMPLETED run): say what and why.
            assert {s.status for s in states.values()} == {Status.COMPLETE}, (
                {k: (s.status.value, s.run_id, s.error) for k, s in states.items()},
                ledger.events("demo_orders").to_pylist()[-8:],
                (tmp_path / "worker.log").read_text()[-4000:],
            )

            rejected = trigger(prefect_server, env, {**params, "reprocess": "all"})
            wait_paused(prefect_server, rejected, tmp_path / "worker.log")
            dialog = open_the_form(page, prefect_server, rejected)
            click_decision(page, dialog, "reject", "amounts look off")
            leave(page, prefect_server, rejected)
            run = wait_final(prefect_server, rejected)
    finally:
        stop_group(worker)
    assert run["state_type"] == "FAILED", (run["state"]["message"], (tmp_path / "worker.log").read_text()[-3000:])
    assert "rejected (operator): amounts look off" in run["state"]["message"]
    latest = ledger.current("demo_orders")
    assert latest["2024-01-02"].run_id == rejected and latest["2024-01-02"].status is Status.COMPLETE  # the canary
    for day in ("2024-01-01", "2024-01-03"):  # the rest: not written by the rejected run (claimed, then left)
        assert not (latest[day].run_id == rejected and latest[day].status is Status.COMPLETE), latest[day]
