"""No permission on one prefix of a bucket: the credentials reach the bucket, but a bucket policy denies them
the prefix of a pipeline's source or target (and so its ledger beside it). A real S3-compatible server with
its own IAM (versitygw ``--iam-dir``: a user, and a bucket policy with an explicit Deny on ``locked/*``);
the ``backfill`` CLI as a process, with that user's credentials.

What the user must get: one line naming the location and saying it is the permission on that prefix (the
bucket itself answers), a non-zero exit, no traceback, no secret; and the same user's pipelines on the
prefix it may use keep working (``status`` of one there answers).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from prefect_backfill.storage import delta_options
from prefect_backfill.testing.object_store import ObjectStore, build_server, create_user, root_request, start_store

ROOT = Path(__file__).resolve().parents[2]
BACKFILL = str(Path(sys.executable).parent / "backfill")
USER, SECRET = "clerk", "clerk-secret-key"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": [USER]},
            "Action": ["s3:*"],
            "Resource": ["arn:aws:s3:::shared", "arn:aws:s3:::shared/*"],
        },
        {
            "Effect": "Deny",
            "Principal": {"AWS": [USER]},
            "Action": ["s3:*"],
            "Resource": ["arn:aws:s3:::shared/locked/*"],
        },
    ],
}


@dataclass(frozen=True)
class Lake:
    server: ObjectStore
    env: dict[str, str]  # the CLI's: the user's credentials

    def cli(self, *args: str) -> tuple[int, str]:
        done = subprocess.run([BACKFILL, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr


@contextlib.contextmanager
def _as_root(server: ObjectStore) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(server.env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    tmp = tmp_path_factory.mktemp("s3iam")
    server = start_store(build_server(ROOT / ".cache"), tmp / "store", log=tmp / "versitygw.log", iam_dir=tmp / "iam")
    try:
        create_user(server, USER, SECRET)  # first: the store refuses a policy naming an unknown user
        assert root_request(server, "PUT", "/shared") == 200
        assert root_request(server, "PUT", "/shared?policy", json.dumps(POLICY).encode()) in (200, 204)
        bronze = pa.table({"order_id": [1, 2, 3], "order_date": ["2024-01-01"] * 3, "amount": [1.0, 2.0, 3.0]}).cast(
            pa.schema([("order_id", pa.int64()), ("order_date", pa.date32()), ("amount", pa.float64())])
        )
        with _as_root(server):  # root is not bound by the policy: both prefixes get a real bronze table
            for location in ("s3a://shared/open/bronze", "s3a://shared/locked/bronze"):
                write_deltalake(location, bronze, partition_by=["order_date"], storage_options=delta_options(location))
        modules = tmp / "modules"
        modules.mkdir()
        (modules / "iam_pipelines.py").write_text(
            textwrap.dedent(
                """
                from prefect_backfill import Pipeline, register

                for name, source, target in [
                    ("open_orders", "s3a://shared/open/bronze", "s3a://shared/open/orders"),
                    ("locked_target", "s3a://shared/open/bronze", "s3a://shared/locked/orders"),
                    ("locked_source", "s3a://shared/locked/bronze", "s3a://shared/open/copy"),
                ]:
                    register(Pipeline(name, source, target, "order_date", lambda orders: orders, "1"))
                """
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "BACKFILL_", "AWS_"))}
        env |= {
            **server.env,
            "AWS_ACCESS_KEY_ID": USER,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{modules}",
            "BACKFILL_PIPELINE_MODULES": "iam_pipelines",
            "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),
            "BACKFILL_S3_RETRY_SECONDS": "5",
            "PREFECT_HOME": str(tmp / "prefect"),
        }
        yield Lake(server, env)
    finally:
        server.stop()


def test_the_user_may_use_its_open_prefix(lake: Lake) -> None:
    code, out = lake.cli("status", "open_orders", "--json")
    assert code == 0, out
    assert json.loads(out)["counts"].get("COMPLETE", 0) == 0


@pytest.mark.parametrize(
    ("command", "pipeline", "denied"),
    [
        ("status", "locked_target", "s3a://shared/locked/"),
        ("run", "locked_target", "s3a://shared/locked/"),
        ("run", "locked_source", "s3a://shared/locked/bronze"),
    ],
    ids=["status-target-prefix", "run-target-prefix", "run-source-prefix"],
)
def test_no_permission_on_one_prefix_is_one_line_naming_it(
    lake: Lake, command: str, pipeline: str, denied: str
) -> None:
    args = (
        [command, pipeline]
        if command == "status"
        else [command, pipeline, "--start", "2024-01-01", "--end", "2024-01-01"]
    )
    code, out = lake.cli(*args)
    assert code != 0, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    assert denied in errors[0] and "permission on that prefix" in errors[0], out
    assert "Traceback" not in out
    assert SECRET not in out and lake.server.env["AWS_SECRET_ACCESS_KEY"] not in out
