"""The CLI's embedded Prefect server is started once, however many times and from however many threads
it is asked for, even when a start times out (a fresh ``PREFECT_HOME`` migrating on a busy machine): a
second server on the same port ran its whole start-up, failed to bind and printed uvicorn's traceback
in the middle of a user's run (seen in ``make demo``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
from prefect.server.api.server import SubprocessASGIServer
from prefect_backfill.embedded import detach_embedded_server

assert detach_embedded_server()
server = SubprocessASGIServer()
try:
    server.start(timeout=1)  # a fresh PREFECT_HOME: its migrations alone take longer than this
except RuntimeError:
    pass
else:
    raise SystemExit("the server started within 1 s: this test would prove nothing")
first = server.server_process.pid
server.start(timeout=120)  # what the flow does next: it asks for the server again
print(first, server.server_process.pid, flush=True)
server.stop()
"""


def test_a_start_that_timed_out_is_waited_for_not_started_again(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    first, then = done.stdout.split()
    assert first == then, "a second server process was started on the same port"
    assert b"address already in use" not in done.stderr, done.stderr.decode()[-3000:]
