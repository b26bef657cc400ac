"""A real ``prefect server start`` behind a counting reverse proxy: what a client asks of Prefect, counted by
method and route, with the frames it sends on the events websocket (:mod:`bench.control_plane` uses it).

A proxy rather than the server's own log: Prefect's server logs no requests at its default level, and the proxy
counts exactly what crossed the wire, whatever the client (the CLI, a worker, a flow run)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.harness import Result

__all__ = ["Frames", "Tally", "counting_proxy", "prefect_server", "route"]

#: Not passed on: this hop's own (bodies are read whole and answers re-framed here).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"})
_PLACEHOLDERS = re.compile(r"/(?:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|[0-9]+)(?=/|$)", re.I)


def route(path: str) -> str:
    """``/api/task_runs/5f0e…/set_state?x=1`` → ``/api/task_runs/{id}/set_state``: a count per endpoint."""
    return _PLACEHOLDERS.sub(lambda m: "/{id}" if m.group(1) else "/{n}", path.split("?", 1)[0])


class Frames:
    """Counts the data frames one side of a websocket sends, reading frame headers only (RFC 6455 §5.2): each is
    one message (Prefect's events client sends one event per frame, after one auth message)."""

    def __init__(self) -> None:
        self.messages = self.controls = self._skip = 0
        self._head = b""

    def feed(self, data: bytes) -> None:
        while data:
            if self._skip:
                taken = min(self._skip, len(data))
                self._skip, data = self._skip - taken, data[taken:]
                continue
            buf = self._head + data
            size = 2 + {126: 2, 127: 8}.get(buf[1] & 0x7F, 0) + 4 * (buf[1] >> 7) if len(buf) >= 2 else 3
            if len(buf) < size:
                self._head, data = buf, b""
                continue
            length = buf[1] & 0x7F
            if length >= 126:
                length = int.from_bytes(buf[2 : 4 if length == 126 else 10], "big")
            opcode = buf[0] & 0x0F
            self.messages += opcode in (1, 2)  # text, binary: a message's first frame (0 continues one)
            self.controls += opcode >= 8  # close, ping (the client's checkpoints), pong
            self._head, self._skip, data = b"", length, buf[size:]


@dataclass
class Tally:
    """What passed through the proxy, by ``"METHOD /route"``."""

    requests: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)  # elements of JSON-array bodies (log records, events)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "422 POST /api/…": answers of 400 and above
    sockets: list[tuple[str, Frames]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, key: str, body: bytes) -> None:
        items = 0
        if body[:1] == b"[":
            with contextlib.suppress(ValueError):
                items = len(json.loads(body))
        with self.lock:
            self.requests[key] += 1
            self.items[key] += items
            self.bytes_sent[key] += len(body)

    def snapshot(self) -> Result:
        with self.lock:
            frames: Counter[str] = Counter()
            for key, counter in self.sockets:
                frames[key] += counter.messages
            return {
                "requests": sum(self.requests.values()),
                "by_route": dict(self.requests.most_common()),
                "items": {k: v for k, v in self.items.items() if v},
                "bytes_sent": dict(self.bytes_sent),
                "errors": {k: v for k, v in self.errors.items() if v},
                "websocket_messages": dict(frames),
                "websocket_controls": sum(counter.controls for _, counter in self.sockets),
            }


@contextmanager
def counting_proxy(upstream: str) -> Iterator[tuple[str, Tally]]:
    """A threaded reverse proxy to ``upstream`` (``http://host:port/api``) for the block's duration: yields its own
    API URL and the live :class:`Tally`. Requests pass on as received (method, path, query, headers, body),
    answers stream back as they come; a websocket upgrade becomes a byte tunnel both ways."""
    host, port = upstream.removeprefix("http://").split("/", 1)[0].split(":")
    target, tally = (host, int(port)), Tally()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # the tally is the log
            return

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            key = f"{self.command} {route(self.path)}"
            tally.request(key, body)
            if (self.headers.get("Upgrade") or "").lower() == "websocket":
                return self.tunnel(key, body)
            conn = http.client.HTTPConnection(*target, timeout=300)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        conn.putheader(name, value)
                conn.endheaders(body or None)
                self.stream(conn.getresponse(), key)
            finally:
                conn.close()

        def stream(self, reply: http.client.HTTPResponse, key: str) -> None:
            with tally.lock:
                tally.errors[f"{reply.status} {key}"] += reply.status >= 400
            self.send_response_only(reply.status, reply.reason)
            for name, value in reply.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            bodyless = self.command == "HEAD" or reply.status in (204, 304) or reply.status < 200
            chunked = not bodyless and reply.getheader("Content-Length") is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not bodyless and (piece := reply.read1(65536)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

        def tunnel(self, key: str, body: bytes) -> None:
            """Prefect's events websocket: the handshake as received, then bytes both ways until either side
            closes; the client's frames are counted on the way."""
            frames = Frames()
            with tally.lock:
                tally.sockets.append((key, frames))
            upstream_socket = socket.create_connection(target)
            head = "\r\n".join([self.requestline, *(f"{k}: {v}" for k, v in self.headers.items()), "", ""])
            upstream_socket.sendall(head.encode("latin-1") + body)

            def back() -> None:
                with contextlib.suppress(OSError):
                    while data := upstream_socket.recv(65536):
                        self.connection.sendall(data)
                    self.connection.shutdown(socket.SHUT_RDWR)

            answers = threading.Thread(target=back, name="proxy-websocket", daemon=True)
            answers.start()
            with contextlib.suppress(OSError):
                while data := self.rfile.read1(65536):
                    with tally.lock:
                        frames.feed(data)
                    upstream_socket.sendall(data)
                upstream_socket.shutdown(socket.SHUT_WR)
            answers.join(timeout=10)
            upstream_socket.close()
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="counting-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", tally
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prefect_server(home: Path, log: Path, timeout: float = 180.0) -> Iterator[str]:
    """The venv's ``prefect server start`` on 127.0.0.1 and a free port, with its own ``PREFECT_HOME`` (a fresh
    SQLite database), UI and analytics off; yields its API URL once ``/health`` answers, stops its process group
    (SIGINT, SIGTERM, SIGKILL) after the block."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BACKFILL_"))}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    prefect = str(Path(sys.executable).parent / "prefect")
    argv = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--analytics-off"]
    api = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(api):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server did not start (see {log}): {log.read_text()[-2000:]}")
                time.sleep(0.5)
            yield api
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
                    break


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
