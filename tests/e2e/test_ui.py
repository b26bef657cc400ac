"""A real browser on a real Prefect server: the flow run page shows the backfill's artifacts.

Runs `backfill run` as a user would (its own process, PREFECT_API_URL pointing at the server), then
opens the flow run in headless Chromium (Debian's package, driven by Playwright) and saves a
screenshot of the page in ``out/`` (ignored by git). The README's picture, ``docs/ui-flow-run-artifacts.png``,
is only replaced on purpose: ``make screenshot`` runs this test and copies it there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUT = ROOT / "out"  # ignored by git; `make screenshot` publishes the screenshot to docs/
SCREENSHOT = OUT / "ui-flow-run-artifacts.png"


@pytest.fixture
def demo_lake(tmp_path: Path) -> Path:
    from prefect_backfill.demo import generate_orders

    data = tmp_path / "data"
    generate_orders(str(data / "lake" / "bronze" / "orders"), "2024-01-01", "2024-01-03", rows_per_day=40)
    return data


def test_flow_run_page_shows_progress_table_and_calendar(prefect_server: Server, demo_lake: Path) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make browser` installs Debian's package")
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    env = {
        **prefect_server.env,
        "BACKFILL_DATA_DIR": str(demo_lake),
        "BACKFILL_RESULT_STORAGE_PATH": str(demo_lake / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo",
        "PREFECT_HOME": str(demo_lake / "client-home"),
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "backfill"),
            "run",
            "demo_orders",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-03",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 completed" in done.stdout

    # The newest finished run (the server may also hold scheduled runs of deployed schedules).
    runs = httpx.post(
        f"{prefect_server.api_url}/flow_runs/filter",
        json={"sort": "END_TIME_DESC", "limit": 1, "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}},
    )
    flow_run = runs.json()[0]
    assert flow_run["state_type"] == "COMPLETED"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{prefect_server.url}/runs/flow-run/{flow_run['id']}", wait_until="networkidle")
            try:
                page.get_by_text("Artifacts", exact=True).first.click()
                page.get_by_text("backfill-demo-orders-progress").first.wait_for(timeout=60_000)
            except Exception:
                OUT.mkdir(exist_ok=True)
                page.screenshot(path=str(OUT / "ui-debug.png"), full_page=True)
                (OUT / "ui-debug.html").write_text(page.content())
                raise
            text = page.inner_text("body")
            assert "backfill-demo-orders-partitions" in text
            assert "backfill-demo-orders-calendar" in text
            assert "3 of 3 partitions (100%)" in text
            OUT.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
