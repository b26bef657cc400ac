"""What is wrong with an object store, asked of the store itself when a read or write there failed.

delta-rs and pyarrow report an S3 failure as text ("Generic S3 error", "lacked the necessary
privileges"): the package does not decide anything from such text. Instead, when a ledger, lease or table
on s3:// cannot be read or written, one signed ``HEAD`` of the bucket tells the cases apart by what the
store answers: nothing (down, wrong endpoint), 404 (no such bucket), 403 (credentials refused or no
permission on the bucket), or 200 (the bucket is fine: the problem is the prefix or the data). The
answer becomes a :class:`StoreProblem` with one line saying what to do. Credentials are read from the
standard AWS environment for the signature only; they never appear in what this returns.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from prefect_backfill.settings import BackfillSettings, get_settings
from prefect_backfill.storage import on_object_store

__all__ = ["StoreProblem", "StoreProblemKind", "explained", "probe_store", "signed_headers"]

PROBE_TIMEOUT_S = 5.0


class StoreProblemKind(enum.Enum):
    UNREACHABLE = "unreachable"
    NO_BUCKET = "no-bucket"
    DENIED = "denied"
    OTHER = "other"  # the bucket answers: the prefix, the permissions on it, or the data


@dataclass(frozen=True, slots=True)
class StoreProblem:
    kind: StoreProblemKind
    line: str


def _bucket(location: str) -> str:
    return location.split("://", 1)[1].split("/", 1)[0]


def _endpoint(settings: BackfillSettings, bucket: str) -> tuple[str, str]:
    """The URL of a HEAD of ``bucket`` and its Host header."""
    if settings.s3_endpoint:
        base = urlsplit(settings.s3_endpoint)
        if settings.s3_path_style:
            return f"{base.scheme}://{base.netloc}/{quote(bucket)}", base.netloc
        host = f"{bucket}.{base.netloc}"
        return f"{base.scheme}://{host}/", host
    region = settings.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    host = f"{bucket}.s3.{region}.amazonaws.com"
    return f"https://{host}/", host


def signed_headers(
    url: str,
    host: str,
    region: str,
    now: dt.datetime,
    method: str = "HEAD",
    body: bytes = b"",
    credentials: tuple[str, str] | None = None,
) -> dict[str, str]:
    """AWS Signature V4 headers of a request (a body-less HEAD unless told), with ``credentials`` or the
    standard credential variables (none: unsigned). A query is signed as sub-resources are (``?policy``)."""
    key_id, secret = credentials or (os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"))
    payload = hashlib.sha256(body).hexdigest()
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    if token := os.environ.get("AWS_SESSION_TOKEN"):
        headers["x-amz-security-token"] = token
    if not key_id or not secret:
        return headers
    names = sorted(headers)
    parts = urlsplit(url)
    lines = [f"{n}:{headers[n]}" for n in names]
    canonical = "\n".join(
        [method, parts.path or "/", _canonical_query(parts.query), *lines, "", ";".join(names), payload]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def _canonical_query(query: str) -> str:
    pairs = sorted(part.split("=", 1) if "=" in part else (part, "") for part in query.split("&") if part)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)


def probe_store(location: str, settings: BackfillSettings | None = None) -> StoreProblem | None:
    """What the store of ``location`` says about its bucket; None for a location not on an object store."""
    if not on_object_store(location):
        return None
    settings = settings or get_settings()
    bucket = _bucket(location)
    url, host = _endpoint(settings, bucket)
    region = settings.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    request = urllib.request.Request(
        url, method="HEAD", headers=signed_headers(url, host, region, dt.datetime.now(dt.UTC))
    )
    where = settings.s3_endpoint or "AWS S3"
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        return StoreProblem(
            StoreProblemKind.UNREACHABLE,
            f"the object store at {where} does not answer ({reason}): start it, or fix BACKFILL_S3_ENDPOINT",
        )
    if status == 404:
        return StoreProblem(
            StoreProblemKind.NO_BUCKET, f"bucket {bucket!r} does not exist at {where}: create it, or fix the path"
        )
    if status in (401, 403):
        return StoreProblem(
            StoreProblemKind.DENIED,
            f"{where} refused access to bucket {bucket!r} (HTTP {status}): check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's policy",
        )
    return StoreProblem(
        StoreProblemKind.OTHER,
        f"bucket {bucket!r} answers, but {location} cannot be used: check the credentials' permission on that prefix",
    )


def explained(location: str, fallback: str) -> str:
    """``fallback`` (the message for a local path) unless the store of ``location`` says what is wrong."""
    try:
        problem = probe_store(location)
    except Exception:  # the probe only explains: it never hides the failure it explains
        return fallback
    if problem is None:
        return fallback
    return f"{location}: {problem.line}"
