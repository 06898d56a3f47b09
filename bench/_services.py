"""What the service benches share: a fresh S3 bucket and PostgreSQL database, and their teardown.

Each bench makes its own bucket and database (named with a random suffix) on the
services of ``scripts/services/up.sh``, and removes them at the end, even on failure,
so repeated runs never fill RGW's memstore.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def s3_client(**config: Any) -> Any:
    """boto3 as a user would make it, on the test S3 endpoint: its defaults, path addressing."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["SENTENIALX_TEST_S3_ENDPOINT"],
                        config=Config(s3={"addressing_style": "path"}, **config))


def new_bucket(s3: Any, prefix: str) -> str:
    """Create a bucket named ``prefix-<random>``; its name."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def drop_bucket(s3: Any, bucket: str) -> None:
    """Delete every object and abort every multipart upload of ``bucket``, then the bucket."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    s3.delete_bucket(Bucket=bucket)


def new_database(prefix: str) -> tuple[Any, str, str]:
    """Create a PostgreSQL database ``prefix_<random>``: (admin engine, name, its URL)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = os.environ["SENTENIALX_TEST_PG_URL"].replace("postgresql://",
                                                             "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    db = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db}"'))
    return admin, db, make_url(admin_url).set(database=db).render_as_string(hide_password=False)


def drop_database(admin: Any, db: str) -> None:
    """Drop ``db`` (closing its connections) and dispose of the admin engine."""
    from sqlalchemy import text

    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


def random_file(path: Path, size: int) -> Path:
    """Write ``size`` random bytes to ``path``, a MiB at a time; the path."""
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.write(os.urandom(size % MiB))
    return path


def rmtree(p: Path) -> None:
    """Remove a work folder, read-only hub files included."""
    def onerror(func: Any, path: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o600)
        func(path)

    shutil.rmtree(p, onerror=onerror)
