"""pipeline_tests.conftest: shared fixtures: loopback S3 (moto), storage roots, stand-in servers."""

from __future__ import annotations

import os
import socket
import uuid
import warnings

import pytest

# The session-scoped `stac_api_url` fixture: a real stac-fastapi-pgstac on the local Postgres.
pytest_plugins = ["pipeline_tests.stac_server"]

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message=".*is currently in preview.*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_s3():
    """A real moto S3 server on loopback; yields its endpoint URL and sets the AWS_* variables."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def make_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"geopump-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_url(request, tmp_path):
    """A storage root: a local folder, then an S3 prefix on the moto server."""
    if request.param == "local":
        return str(tmp_path / "storage")
    endpoint = request.getfixturevalue("moto_s3")
    return f"s3://{make_bucket(endpoint)}/geopump"


@pytest.fixture
def local_storage_url(tmp_path):
    return str(tmp_path / "storage")


def read_s3_uri(uri: str) -> bytes | None:
    """`source_reader` for the Data API stand-in: the real Data API reads appended files from S3."""
    if not uri.startswith("s3://"):
        return None
    import boto3

    bucket, _, key = uri[5:].partition("/")
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _pg_admin_connection():
    import psycopg2

    try:
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        # CI must run the database tests; a developer machine without Postgres may skip them.
        if _ci():
            pytest.fail(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} in CI: {exc}")
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}: {exc}")
    conn.autocommit = True
    return conn


@pytest.fixture
def temp_pg_database():
    """A fresh database on the shared server (CI reuses it), dropped afterwards."""
    admin = _pg_admin_connection()
    name = f"geopump_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class Sleeps(list):
    """A `sleep` for clients under test: records the waits instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()
