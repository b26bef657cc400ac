"""The CLI's embedded Prefect server (``prefect_backfill.embedded``): started once, however many times and
from however many threads it is waited for, even when a wait times out (a fresh ``PREFECT_HOME`` migrating
on a busy machine): a second server on the same port once ran its whole start-up, failed to bind and
printed uvicorn's traceback in the middle of a user's run (seen in ``make demo``). Prefect's clients in
the process use it, and Prefect's server code is never loaded into the CLI's process (it costs as much CPU
as every other Prefect import of a run together). Its port is bound by the CLI and handed down: no other
process can take it between its choice and the server's start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import os, sys

from prefect_backfill.embedded import serving, start_embedded_server
from prefect_backfill.errors import ServerStartError

server = start_embedded_server()
assert server is not None and serving() and start_embedded_server() is server
assert os.environ["PREFECT_API_URL"] == server.api_url
# The port is the server's from the start, before the child has even run: no other process can take it.
import errno, socket
from urllib.parse import urlsplit

other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    other.bind(("127.0.0.1", urlsplit(server.api_url).port))
except OSError as exc:
    assert exc.errno == errno.EADDRINUSE, exc
else:
    raise SystemExit("another process could bind the embedded server's port after it was chosen")
finally:
    other.close()
try:
    server.wait_ready(1)  # a fresh PREFECT_HOME: its migrations alone take longer than this
except ServerStartError as exc:
    print(exc, file=sys.stderr)
else:
    raise SystemExit("the server answered within 1 s: this test would prove nothing")
first = server.process.pid
server.wait_ready(120)  # what the CLI does next: it waits for the server again
from prefect.client.orchestration import get_client

with get_client(sync_client=True) as client:  # Prefect's own client finds it, and starts no server of its own
    assert str(client.api_url).rstrip("/") == server.api_url, client.api_url
    assert client.api_healthcheck() is None
loaded = sorted(m for m in sys.modules if m.startswith("prefect.server"))
print(first, server.process.pid, len(loaded), loaded[:5], flush=True)
"""


def test_the_embedded_server_starts_once_is_waited_for_and_keeps_prefects_server_code_out(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 0, err[-3000:]
    assert "did not answer within 1 s" in err, err[-3000:]
    first, then, loaded, names = done.stdout.decode().split(" ", 3)
    assert first == then, "a second server process was started"
    assert loaded == "0", f"Prefect's server code was imported into the CLI's process: {names}"
    assert "address already in use" not in err, err[-3000:]
    assert not _alive(int(first)), "the embedded server outlived the process it served"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    return "zombie" not in status
