"""A real S3-compatible server on 127.0.0.1 for the tests, the demo and `make object-store`.

The server is versitygw (Apache-2.0; Versity's S3 gateway over a POSIX folder: a folder under its root is a
bucket, an object is a file). It is built once with ``go install`` into ``<cache_dir>/bin`` (about a minute
on two cores with a warm module cache, five from nothing) and speaks the S3 API over HTTP, conditional
writes (``If-None-Match: *``, ``If-Match``) included, which is what Delta commits need from a store shared by
several writers. It was chosen over MinIO (AGPL) and SeaweedFS (its go.mod has replace directives, so it
does not build with ``go install``); ``moto``'s server is a mock and would make the claims here untrue.

Nothing here is used by a backfill itself: a user points the package at their own store with the
``BACKFILL_S3_*`` settings and the standard AWS credentials.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VERSITYGW", "ObjectStore", "build_server", "create_user", "root_request", "running_store", "server_binary"]

#: The module and version ``make object-store`` builds (checked to build with Go 1.26 here).
VERSITYGW = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
ACCESS_KEY = "backfill"
SECRET_KEY = "backfill-secret-key"
REGION = "us-east-1"


def server_binary(cache_dir: Path) -> Path:
    return cache_dir.resolve() / "bin" / "versitygw"


def build_server(cache_dir: Path) -> Path:
    """The versitygw binary, built with ``go install`` into ``<cache_dir>/bin`` if it is not there yet."""
    binary = server_binary(cache_dir)
    if binary.exists():
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    cache = cache_dir.resolve()
    env = {
        **os.environ,
        "GOBIN": str(cache / "bin"),
        "GOPATH": str(cache / "go"),
        "GOMODCACHE": str(cache / "go" / "mod"),
        "GOFLAGS": "-modcacherw",
    }
    subprocess.run([go, "install", VERSITYGW], env=env, check=True)
    return binary


@dataclass(frozen=True)
class ObjectStore:
    """A running server: where it listens, its folder, and the settings a backfill needs to use it."""

    endpoint: str
    root: Path
    process: subprocess.Popen[bytes]
    binary: Path

    def bucket(self, name: str) -> str:
        """Create the bucket ``name`` (a folder under the root) and return it."""
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return name

    @property
    def env(self) -> Mapping[str, str]:
        """The environment a process needs to use this store: the package's settings and the standard
        AWS credential variables (what a user sets for AWS S3, R2 or MinIO, with their own values)."""
        return {
            "BACKFILL_S3_ENDPOINT": self.endpoint,
            "BACKFILL_S3_REGION": REGION,
            "BACKFILL_S3_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_store(
    binary: Path, root: Path, port: int | None = None, log: Path | None = None, iam_dir: Path | None = None
) -> ObjectStore:
    """Start versitygw serving ``root`` on 127.0.0.1 (a free port unless ``port``) and wait until it answers.
    With ``iam_dir``, its own IAM keeps users there (:func:`create_user`), and bucket policies apply to them."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    env = {**os.environ, "ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY}
    iam = ["--iam-dir", str(iam_dir)] if iam_dir is not None else []
    if iam_dir is not None:
        iam_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(binary), "--port", f"127.0.0.1:{port}", *iam, "posix", str(root)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of the test run is not its business: the fixture stops it
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"versitygw exited with {process.returncode} (see {log})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return ObjectStore(f"http://127.0.0.1:{port}", root, process, binary)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"versitygw did not listen on 127.0.0.1:{port} within 30 s")


def create_user(store: ObjectStore, access_key: str, secret_key: str) -> None:
    """A user of the store's own IAM (started with ``iam_dir``), through versitygw's admin API as root."""
    admin = [str(store.binary), "admin", "-a", ACCESS_KEY, "-s", SECRET_KEY, "--er", store.endpoint]
    subprocess.run(
        [*admin, "create-user", "--access", access_key, "--secret", secret_key, "--role", "user"],
        check=True,
        capture_output=True,
    )


def root_request(store: ObjectStore, method: str, path: str, body: bytes = b"") -> int:
    """One S3 request signed as the store's root user (creating a bucket, setting its policy); its status."""
    import datetime as dt
    import urllib.error
    import urllib.request

    from prefect_backfill.store_probe import signed_headers

    url = store.endpoint + path
    host = store.endpoint.split("://", 1)[1]
    headers = signed_headers(url, host, REGION, dt.datetime.now(dt.UTC), method, body, (ACCESS_KEY, SECRET_KEY))
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def running_store(cache_dir: Path, root: Path, log: Path | None = None) -> Iterator[ObjectStore]:
    store = start_store(build_server(cache_dir), root, log=log)
    try:
        yield store
    finally:
        store.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """``make object-store``: serve ``--root`` on 127.0.0.1:``--port`` in the foreground (Ctrl-C stops it),
    with the bucket ``lake``, and print the settings to export in the shell that runs the backfill."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m prefect_backfill.testing.object_store")
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--root", type=Path, default=Path(".data/object-store"))
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("BACKFILL_CACHE_DIR", ".cache")))
    args = parser.parse_args(argv)
    store = start_store(build_server(args.cache_dir), args.root.resolve(), port=args.port)
    store.bucket("lake")
    print(f"versitygw serves {store.root} on {store.endpoint} (bucket 'lake'); in the shell of the backfill:")
    for key, value in store.env.items():
        print(f"  export {key}={value}")
    print("  backfill demo --lake s3a://lake/demo")
    signal.signal(signal.SIGTERM, lambda *_: store.stop())
    try:
        store.process.wait()
    except KeyboardInterrupt:
        store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
