"""The counting proxy of the control-plane benchmark (bench/control_plane.py): what it counts is what the page
reports, so its route templates, its websocket frame count and its fit are checked here, against a local
upstream (no Prefect server)."""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from bench.control_plane import fit
from bench.counting_proxy import Frames, counting_proxy, route


def test_route_templates_ids_and_numbers() -> None:
    assert route("/api/task_runs/5f0e1234-aaaa-bbbb-cccc-0123456789ab/set_state?x=1") == "/api/task_runs/{id}/set_state"
    assert route("/api/flow_runs/12/logs") == "/api/flow_runs/{n}/logs"
    assert route("/api/v2/concurrency_limits/backfill-x") == "/api/v2/concurrency_limits/backfill-x"


def _frame(size: int, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 §5.2) of ``size`` payload bytes."""
    head = bytes([0x80 | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return head + os.urandom(4) + b"x" * size


def test_frames_counted_whatever_the_reads() -> None:
    """Messages and control frames, with every length encoding, however the stream is cut into reads."""
    stream = b"".join([_frame(5), _frame(200), _frame(70_000), _frame(0, 9), _frame(3, 2), _frame(125)])
    rng = random.Random(20)
    for _ in range(50):
        frames, i = Frames(), 0
        while i < len(stream):
            j = i + rng.randint(1, 300)
            frames.feed(stream[i:j])
            i = j
        assert (frames.messages, frames.controls) == (5, 1)


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = {"method": self.command, "path": self.path, "body": body.decode(), "header": self.headers.get("X-T")}
        out = json.dumps(seen).encode()
        self.send_response(404 if "missing" in self.path else 200)
        if self.path.endswith("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (out[:5], out[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PATCH = answer


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_proxy_forwards_and_counts_by_route(upstream: str) -> None:
    with counting_proxy(upstream) as (api, tally), httpx.Client(base_url=api) as client:
        logs = client.post("/logs/", json=[{"a": 1}, {"b": 2}], headers={"X-T": "t"}).json()
        assert logs == {"method": "POST", "path": "/api/logs/", "body": '[{"a":1},{"b":2}]', "header": "t"}
        patched = client.patch("/artifacts/5f0e1234-aaaa-bbbb-cccc-0123456789ab", json={"x": 1}).json()
        assert patched["method"] == "PATCH" and patched["body"] == '{"x":1}'
        assert client.get("/runs/chunked?q=1").json()["path"] == "/api/runs/chunked?q=1"  # re-framed, query kept
        assert client.get("/missing").status_code == 404
        counted = tally.snapshot()
    assert counted["requests"] == 4
    assert counted["by_route"]["PATCH /api/artifacts/{id}"] == 1
    assert counted["items"] == {"POST /api/logs/": 2}  # the log records in the batch
    assert counted["errors"] == {"404 GET /api/missing": 1}


def test_proxy_tunnels_a_websocket_and_counts_its_messages() -> None:
    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(f"ok {message!s:.3}")

    with serve(echo, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        with counting_proxy(f"http://127.0.0.1:{port}/api") as (api, tally):
            with connect(api.replace("http://", "ws://") + "/events/in") as ws:
                for i in range(20):
                    ws.send("e" * (i * 300))  # compressed or not, one frame each
                    assert str(ws.recv()).startswith("ok")
            counted = tally.snapshot()
        server.shutdown()
    assert counted["by_route"] == {"GET /api/events/in": 1}
    assert counted["websocket_messages"] == {"GET /api/events/in": 20}


def test_fit_separates_chunks_partitions_and_minutes() -> None:
    """A count of 20 + 1 per chunk + 10 per minute: nothing per partition, although the minutes grow with them."""
    runs = [(22, 8784, 0.5), (88, 8784, 0.7), (110, 43848, 2.1), (439, 43848, 2.5), (22, 8784, 1.2)]
    fixed, per_chunk, per_k, per_minute = fit([(c, p, m, 20 + c + 10 * m) for c, p, m in runs]) or (0, 0, 0, 0)
    assert (round(fixed, 6), round(per_chunk, 6), round(per_k, 6), round(per_minute, 6)) == (20, 1, 0, 10)
    assert fit([(c, p, m, 1.0) for c, p, m in runs[:4]]) is None  # as many runs as terms: no fit
