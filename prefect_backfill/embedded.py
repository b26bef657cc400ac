"""Prefect's embedded server, out of the terminal's reach, and never outliving the process it serves.

Without ``PREFECT_API_URL``, Prefect starts a temporary API server as a child process in the CLI's own
process group. A terminal's Ctrl-C signals that whole group: the server died with the signal, before the
run could record how it ended, and Prefect's services then logged every few seconds to a dead API. So
the ``backfill`` CLI starts that server in a session of its own (no terminal signal reaches it); the CLI
stops it at exit as Prefect does, and the server stops by itself when its stdin, a pipe from the CLI,
reaches its end: the CLI is gone, even by ``kill -9``, and nothing is left behind.

It replaces the one instance Prefect's clients ask for (``SubprocessASGIServer()``, a singleton per
port), so every part of Prefect in this process talks to it. The command is Prefect 3.9's own
(``SubprocessASGIServer._run_uvicorn_command``), run through :mod:`prefect_backfill._server_child`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

__all__ = ["detach_embedded_server"]


def detach_embedded_server() -> bool:
    """Make the embedded server Prefect starts on demand (in this process, no ``PREFECT_API_URL``) a
    detached one. True if it will be; False if there is nothing to do (an API URL is set, or Prefect's
    server was already created, e.g. by an earlier command in this process)."""
    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if get_current_settings().api.url or None in SubprocessASGIServer._instances:
        return False

    class DetachedServer(SubprocessASGIServer):
        _starting = threading.Lock()

        def start(self, timeout: int | None = None) -> None:
            # One start at a time: the CLI starts the server in a thread while Spark starts in another,
            # and any Prefect client of the process may ask for it meanwhile.
            with self._starting:
                super().start(timeout)

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            if self.server_process is not None and self.server_process.poll() is None:
                # A start that timed out (a fresh PREFECT_HOME's migrations on a busy machine) left its
                # server coming up: wait for that one. A second one on the same port would run its whole
                # start-up, fail to bind, and print uvicorn's traceback on the user's terminal.
                return self.server_process
            server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
            return subprocess.Popen(
                args=[
                    sys.executable,
                    "-m",
                    "prefect_backfill._server_child",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env={
                    **os.environ,
                    **server_env,
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
                stdin=subprocess.PIPE,  # its end is the end of this process (see _server_child)
                start_new_session=True,  # out of the terminal's process group: Ctrl-C is for the CLI
            )

    DetachedServer()  # registers itself as the instance for port None, the one Prefect's clients use
    return True
