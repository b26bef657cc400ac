"""``python -m prefect_backfill._server_child --fd FD --app-dir DIR``: Prefect's embedded API server
(uvicorn serving ``prefect.server.api.server:create_app``, as Prefect 3.9's own temporary server does), on
the listening socket its parent bound, and which shuts down when its parent is gone (see
:mod:`prefect_backfill.embedded`).

The socket is bound by the parent and inherited (``FD``): the port is the parent's from the start, so no
other process can take it between the choice of a free port and the server's bind, and the parent knows
its API URL without waiting for this process to start.

The parent holds the write end of this process's stdin and never writes: reading it returns at its end,
which is when the parent exited, however it exited. Then the server stops as on SIGTERM (uvicorn's
graceful shutdown), or at once if that takes more than 10 s."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading

#: uvicorn's exit code when the application did not start (its CLI's ``STARTUP_FAILURE``).
STARTUP_FAILURE = 3


def _stop_with_parent() -> None:
    with contextlib.suppress(OSError):
        sys.stdin.buffer.read()
    last_resort = threading.Timer(10.0, os._exit, args=(0,))
    last_resort.daemon = True
    last_resort.start()
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prefect_backfill._server_child")
    parser.add_argument("--fd", type=int, required=True, help="the bound socket, inherited from the parent")
    parser.add_argument("--app-dir", required=True, help="Prefect's package folder (as Prefect passes it)")
    options = parser.parse_args(argv)
    threading.Thread(target=_stop_with_parent, name="stop-with-parent", daemon=True).start()
    listening = socket.socket(fileno=options.fd)  # family and type read from the descriptor (AF_INET)
    sys.path.insert(0, options.app_dir)
    import uvicorn

    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[listening])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
