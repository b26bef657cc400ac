"""A fault-injecting HTTP proxy in front of a real S3-compatible server, for the fault tests.

Real stores throttle (``503 SlowDown``), answer slowly, and sometimes lose the answer to a request they
carried out (the connection drops after the object was written). The server the tests run
(:mod:`.object_store`) does none of that on its own, so this proxy does it on purpose, by rule, between the
clients (Spark's S3A, delta-rs, pyarrow) and the server: every request still reaches the real server
unless the rule answers it instead, so what the package does with the answers is what it would do with a
real store's.

The proxy passes the request through byte for byte, ``Host`` included, so SigV4 signatures made for the
proxy's address still verify at the server. Counts per fault are kept, so a test can check that the faults
it claims to survive actually happened.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultRules", "FaultyProxy", "faulty_proxy"]

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
#: Not passed on: this hop's own (the proxy answers ``Expect: 100-continue`` itself and sends bodies whole).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
}


@dataclass(frozen=True)
class FaultRules:
    """What the proxy does to the requests passing through it, counted from its start.

    - ``throttle_every``: every n-th request is answered ``503 SlowDown`` without reaching the server;
    - ``slow_every`` / ``slow_s``: every n-th request waits ``slow_s`` before it is passed on;
    - ``lose_ack_of``: the first PUT whose path matches this pattern is carried out by the server, and its
      answer is replaced by a ``503`` (the write happened; the client cannot know).
    """

    throttle_every: int = 0
    slow_every: int = 0
    slow_s: float = 0.0
    lose_ack_of: str | None = None


@dataclass
class FaultyProxy:
    """A running proxy: its endpoint (``http://127.0.0.1:<port>``) and what it did so far."""

    endpoint: str
    rules: FaultRules
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    lost_acks: list[str] = field(default_factory=list)


@contextmanager
def faulty_proxy(upstream: str, rules: FaultRules) -> Iterator[FaultyProxy]:
    """Serve a proxy to ``upstream`` (``http://host:port``) applying ``rules``, for the block's duration."""
    host, port = upstream.removeprefix("http://").rstrip("/").split(":")
    lock = threading.Lock()
    seen = [0]
    state = FaultyProxy("", rules)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads the counts
            return

        def _handle(self) -> None:
            body = self._body()
            with lock:
                seen[0] += 1
                n = seen[0]
                state.counts["requests"] += 1
            if rules.throttle_every and n % rules.throttle_every == 0:
                with lock:
                    state.counts["throttled"] += 1
                self._answer(503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
                return
            if rules.slow_every and n % rules.slow_every == 0:
                with lock:
                    state.counts["slowed"] += 1
                time.sleep(rules.slow_s)
            lose = False
            if rules.lose_ack_of and self.command == "PUT" and re.search(rules.lose_ack_of, self.path):
                with lock:
                    lose = not state.lost_acks
                    if lose:
                        state.lost_acks.append(self.path)
            upstream_conn = http.client.HTTPConnection(host, int(port), timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream_conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in headers.items():
                    upstream_conn.putheader(key, value)
                upstream_conn.endheaders(body if body else None)
                reply = upstream_conn.getresponse()
                payload = reply.read()
                reply_headers = {k: v for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP}
                status = reply.status
            finally:
                upstream_conn.close()
            if lose and 200 <= status < 300:
                with lock:
                    state.counts["lost_acks"] += 1
                self._answer(503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
                return
            self._answer(status, reply_headers, payload)

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                parts = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            with lock:
                state.statuses[status] += 1
            self.send_response_only(status)
            for key, value in headers.items():
                if key.lower() != "content-length" or self.command == "HEAD":  # a HEAD's length is the object's
                    self.send_header(key, value)
            if self.command != "HEAD" or "content-length" not in {k.lower() for k in headers}:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="faulty-proxy", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
