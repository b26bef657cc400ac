"""``python -m prefect_backfill._server_child UVICORN-ARGS…``: Prefect's embedded API server (uvicorn),
which shuts down when its parent is gone (see :mod:`prefect_backfill.embedded`).

The parent holds the write end of this process's stdin and never writes: reading it returns at its end,
which is when the parent exited, however it exited. Then the server stops as on SIGTERM (uvicorn's
graceful shutdown), or at once if that takes more than 10 s."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading


def _stop_with_parent() -> None:
    with contextlib.suppress(OSError):
        sys.stdin.buffer.read()
    last_resort = threading.Timer(10.0, os._exit, args=(0,))
    last_resort.daemon = True
    last_resort.start()
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    threading.Thread(target=_stop_with_parent, name="stop-with-parent", daemon=True).start()
    from uvicorn.main import main as uvicorn_main

    uvicorn_main(args=sys.argv[1:], prog_name="uvicorn")


if __name__ == "__main__":
    main()
