"""Real PostgreSQL and S3 (Ceph RGW) for the contract and scale suites.

Loaded by path from ``tests/contract/conftest.py`` and ``tests/scale/conftest.py`` (the
tests are not a package), so both suites share one definition of:

- :func:`require_env`: the service variables, or a skip naming what is missing; under
  ``CI=true`` a missing service is a failure, never a skip.
- ``pg_admin`` (session): an AUTOCOMMIT engine on the test server's ``postgres`` database.
- ``pg_database`` (function): a fresh, empty database for one test (dropped after it);
  yields its ``postgresql+psycopg://`` URL.
- ``s3_client`` / ``s3_bucket`` (session): boto3 on the RGW endpoint and a fresh bucket,
  emptied and removed at the end.
- ``s3_store`` (function): a fresh ``s3://bucket/prefix`` for one test (emptied after it).

Start the services with::

    scripts/services/up.sh && source "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env"
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

HOW_TO_START = ("start them with scripts/services/up.sh, then source "
                "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env")
PG_VARS = ("SENTENIALX_TEST_PG_URL",)
S3_VARS = ("SENTENIALX_TEST_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under ``CI=true`` (a missing service is never skipped there)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require_env(*names: str) -> dict[str, str]:
    """The variables, or skip (fail in CI) naming the ones missing."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        unavailable(f"{', '.join(missing)} not set: the test service is not running ({HOW_TO_START})")
    return {n: os.environ[n] for n in names}


def pg_url_for(admin_url: str, database: str) -> str:
    """The test server's URL with another database name."""
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def s3_endpoint() -> str:
    """The RGW endpoint URL (after :func:`require_env`)."""
    return os.environ["SENTENIALX_TEST_S3_ENDPOINT"]


def make_s3_client() -> Any:
    """boto3 on the test endpoint, path addressing (what the store itself uses)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s3_endpoint(),
                        config=Config(s3={"addressing_style": "path"},
                                      request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def list_keys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """``{key: size}`` of every visible object under ``prefix`` (full keys)."""
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = int(o["Size"])
    return out


def list_uploads(client: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Multipart uploads in progress (or abandoned) under ``prefix``."""
    return list(client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []))


def empty_prefix(client: Any, bucket: str, prefix: str = "") -> None:
    """Abort uploads and delete every object under ``prefix``."""
    for u in list_uploads(client, bucket, prefix):
        client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    keys = list(list_keys(client, bucket, prefix))
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})


@dataclass(frozen=True)
class S3Place:
    """One test's ``s3://bucket/prefix`` plus the raw client, to act behind the hub's back."""

    client: Any
    bucket: str
    prefix: str  # without the trailing slash

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"

    def keys(self) -> dict[str, int]:
        """``{relative key: size}`` of what is visible under the prefix."""
        n = len(self.prefix) + 1
        return {k[n:]: s for k, s in list_keys(self.client, self.bucket, self.prefix + "/").items()}

    def uploads(self) -> list[dict[str, Any]]:
        return list_uploads(self.client, self.bucket, self.prefix + "/")


# -- fixtures (re-exported by the conftests) --------------------------------------------
@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    """AUTOCOMMIT engine on the test server (for CREATE/DROP DATABASE)."""
    url = require_env(*PG_VARS)["SENTENIALX_TEST_PG_URL"]
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        unavailable(f"PostgreSQL at SENTENIALX_TEST_PG_URL does not answer ({exc.orig}); {HOW_TO_START}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database(pg_admin: Any) -> Iterator[str]:
    """A fresh database for one test; its URL."""
    from sqlalchemy import text

    name = f"sx_test_{uuid.uuid4().hex[:16]}"
    with pg_admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_url_for(str(pg_admin.url.render_as_string(hide_password=False)), name)
    with pg_admin.connect() as c:
        # FORCE: a hub a failed test did not close still holds connections.
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def s3_client() -> Any:
    """boto3 on the RGW endpoint; skips (fails in CI) if it does not answer."""
    require_env(*S3_VARS)
    from botocore.exceptions import BotoCoreError, ClientError

    client = make_s3_client()
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError) as exc:
        unavailable(f"S3 at SENTENIALX_TEST_S3_ENDPOINT does not answer ({exc}); {HOW_TO_START}")
    return client


@pytest.fixture(scope="session")
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh bucket for the session, emptied and removed after it."""
    name = f"sx-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    empty_prefix(s3_client, name)
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_store(s3_client: Any, s3_bucket: str) -> Iterator[S3Place]:
    """A fresh prefix in the session's bucket for one test."""
    place = S3Place(s3_client, s3_bucket, f"t-{uuid.uuid4().hex[:12]}")
    yield place
    empty_prefix(s3_client, s3_bucket, place.prefix + "/")
