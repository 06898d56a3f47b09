"""Smoke tests for the real services the suite runs against.

They prove that what ``scripts/services/up.sh`` started actually works, so a failure
elsewhere is not mistaken for a service problem:

- PostgreSQL (``SENTENIALX_TEST_PG_URL``): SQLAlchemy connects, creates a table,
  writes and reads it back.
- S3 on Ceph RGW (``SENTENIALX_TEST_S3_ENDPOINT`` + ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``): boto3 with path addressing creates a bucket, uploads
  ~12 MiB in three parts with ``Content-MD5`` on each part, reads a range across a part
  boundary (206), gets a 304 for ``If-None-Match`` with the object's ETag, deletes.

Without the variables these tests are skipped, except in CI (``CI=true``) where a
missing service is a failure rather than a silent skip. Start the services with::

    scripts/services/up.sh && source "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env"
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import uuid
from typing import Any

import pytest

MiB = 1024 * 1024
HOW_TO_START = ("start them with scripts/services/up.sh, then source "
                "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env")


def require_env(*names: str) -> dict[str, str]:
    """Return the variables, or skip (fail in CI) naming the ones missing."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        reason = f"{', '.join(missing)} not set: the test service is not running ({HOW_TO_START})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return {n: os.environ[n] for n in names}


@pytest.mark.postgres
def test_postgres_create_insert_select() -> None:
    url = require_env("SENTENIALX_TEST_PG_URL")["SENTENIALX_TEST_PG_URL"]
    from sqlalchemy import create_engine, text

    table = f"sx_smoke_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            version = conn.execute(text("SELECT version()")).scalar_one()
            assert version.startswith("PostgreSQL"), version
            conn.execute(text(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL)"))
            conn.execute(text(f"INSERT INTO {table} (id, name) VALUES (:id, :name)"),
                         [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}])
        # A new connection sees the committed rows.
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, name FROM {table} ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "alpha"), (2, "beta")]
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


@pytest.fixture
def s3() -> Any:
    env = require_env("SENTENIALX_TEST_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["SENTENIALX_TEST_S3_ENDPOINT"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3's digest


@pytest.mark.s3
def test_s3_multipart_range_conditional_delete(s3: Any) -> None:
    from botocore.exceptions import ClientError

    bucket = f"sx-smoke-{uuid.uuid4().hex[:12]}"
    key = "models/smoke.bin"
    data = random.Random(12).randbytes(12 * MiB + 12345)
    parts = [data[0:5 * MiB], data[5 * MiB:10 * MiB], data[10 * MiB:]]  # 5 MiB minimum but last

    s3.create_bucket(Bucket=bucket)
    upload_id = None
    try:
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done = []
        for n, part in enumerate(parts, start=1):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                               Body=part, ContentMD5=md5_b64(part))
            assert r["ETag"].strip('"') == hashlib.md5(part).hexdigest()  # noqa: S324
            done.append({"PartNumber": n, "ETag": r["ETag"]})
        # The server checks Content-MD5: a part whose digest does not match is refused.
        with pytest.raises(ClientError) as bad:
            s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=9,
                           Body=b"not the bytes", ContentMD5=md5_b64(b"other bytes"))
        assert bad.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest")
        # CompleteMultipartUpload's ETag is empty on Ceph 16.2: take the ETag from HEAD.
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
        upload_id = None

        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(data)
        etag = head["ETag"]
        assert etag.strip('"').endswith(f"-{len(parts)}"), etag

        whole = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest()

        # A range across the first part boundary.
        first, last = 5 * MiB - 100, 5 * MiB + 99
        r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert r["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
        assert r["Body"].read() == data[first:last + 1]

        # Conditional GET: same ETag -> 304 Not Modified (boto3 raises it as ClientError).
        with pytest.raises(ClientError) as nm:
            s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
        assert nm.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
        # ...and a different ETag gets the object.
        r = s3.get_object(Bucket=bucket, Key=key, IfNoneMatch='"0123"', Range="bytes=0-9")
        assert r["Body"].read() == data[:10]

        s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(ClientError) as gone:
            s3.head_object(Bucket=bucket, Key=key)
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    finally:
        if upload_id is not None:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
