"""Prefect's embedded server, started by the CLI itself: out of the terminal's reach, never outliving the
process it serves, and without Prefect's server code in the CLI's own process.

Without ``PREFECT_API_URL``, Prefect starts a temporary API server on demand (``SubprocessASGIServer``) as a
child process in the CLI's own process group. A terminal's Ctrl-C signals that whole group: the server died
with the signal, before the run could record how it ended, and Prefect's services then logged every few
seconds to a dead API. And asking Prefect for it loads ``prefect.server.api.server`` into the CLI: 155
modules, 3.7 s of CPU measured, as much as every other Prefect import of a run together, only to start a
child process.

So ``backfill run`` starts the server itself, before the flow: what Prefect 3.9 runs
(``SubprocessASGIServer._run_uvicorn_command``: uvicorn serving ``prefect.server.api.server:create_app``
in ephemeral mode, UI off), through :mod:`prefect_backfill._server_child`, in a session of its own (no
terminal signal reaches it), on a socket the CLI bound and hands down (Prefect picks a free port and lets
the child bind it: another process could take it in between). Every Prefect client of this process is then pointed at it
(``PREFECT_API_URL`` for this process and its children, Prefect's global settings refreshed), so Prefect
never starts one of its own. The CLI stops it at exit; it also stops by itself when its stdin, a pipe
from the CLI, reaches its end: the CLI is gone, even by ``kill -9``, and nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from prefect_backfill.errors import ServerStartError

__all__ = ["EmbeddedServer", "serving", "start_embedded_server"]

#: What Prefect's own temporary server runs with (Prefect 3.9, ``SubprocessASGIServer``).
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


@dataclass
class EmbeddedServer:
    """A running embedded server: its process and the API URL this process now uses."""

    process: subprocess.Popen[bytes]
    api_url: str
    home: str
    _ready: threading.Event = field(default_factory=threading.Event)

    def wait_ready(self, timeout: float) -> None:
        """Return once the server answers its health check; any thread may wait, and a wait that timed out
        can be waited again (a fresh ``PREFECT_HOME`` migrates its database first, slowly on a busy machine):
        there is only ever one server process. Raises :class:`ServerStartError` if it exited or did not
        answer within ``timeout`` seconds."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while not self._ready.is_set():
                if (code := self.process.poll()) is not None:
                    raise ServerStartError(
                        f"Prefect's embedded server exited with code {code} before it answered (its output is "
                        f"above; PREFECT_HOME={self.home}): set PREFECT_API_URL to a running Prefect server, or "
                        "fix what it says"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        self._ready.set()
                        break
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"Prefect's embedded server did not answer within {timeout:.0f} s (PREFECT_HOME="
                        f"{self.home}; a new home migrates its database first): raise "
                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set PREFECT_API_URL to a running "
                        "Prefect server"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (graceful, as on SIGTERM; killed after 5 s). Idempotent."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_server: EmbeddedServer | None = None
_lock = threading.Lock()


def start_embedded_server() -> EmbeddedServer | None:
    """Start the embedded server for this process (it answers a little later: see
    :meth:`EmbeddedServer.wait_ready`) and point Prefect at it. None if a ``PREFECT_API_URL`` is set (a
    Prefect server the user runs). Called again, it returns the same server."""
    global _server
    from prefect.settings import get_current_settings

    with _lock:
        if _server is not None:
            return _server
        settings = get_current_settings()
        if settings.api.url:
            return None
        import prefect

        # Bound here and inherited by the server: the port is ours from now on (see _server_child).
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        port = int(listening.getsockname()[1])
        with contextlib.closing(listening):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect_backfill._server_child",
                    "--fd",
                    str(listening.fileno()),
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                ],
                env={**os.environ, **_SERVER_ENV, **settings.to_environment_variables(exclude_unset=True)},
                stdin=subprocess.PIPE,  # its end is the end of this process (see _server_child)
                pass_fds=(listening.fileno(),),
                start_new_session=True,  # out of the terminal's process group: Ctrl-C is for the CLI
            )
        _server = EmbeddedServer(process, f"http://127.0.0.1:{port}/api", str(settings.home))
        atexit.register(_server.stop)  # before Prefect's own exit handlers: they run first (LIFO) and flush
        os.environ["PREFECT_API_URL"] = _server.api_url
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
        return _server


def serving() -> bool:
    """Whether this process's Prefect API is its own embedded server (not a server the user runs)."""
    return _server is not None
