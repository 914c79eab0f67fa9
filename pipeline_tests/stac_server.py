"""pipeline_tests.stac_server: a real stac-fastapi-pgstac on the local PostgreSQL, in a fresh database, for tests."""

# Usage: conftest registers this module as a plugin, so any test can ask for the session-scoped
# `stac_api_url` fixture; or `with running_stac_api() as url: ...`. Every run gets its own uniquely named
# database (CI shares one Postgres server that is never empty), dropped WITH (FORCE) on exit; the server
# runs as a subprocess on a free loopback port.

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pipeline_tests.conftest import PG_HOST, PG_PORT, PG_USER
from pipeline_tests.conftest import _pg_admin_connection as _admin_connection
from pipeline_tests.conftest import free_port as _free_port


def _pg_env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # libpq / pypgstac
        PGHOST=PG_HOST,
        PGPORT=str(PG_PORT),
        PGUSER=PG_USER,
        PGPASSWORD="",
        PGDATABASE=database,
        # stac-fastapi-pgstac 7.2 reads the PG* names; older releases read POSTGRES_*: set both.
        POSTGRES_USER=PG_USER,
        POSTGRES_PASS="",
        POSTGRES_DBNAME=database,
        POSTGRES_HOST_READER=PG_HOST,
        POSTGRES_HOST_WRITER=PG_HOST,
        POSTGRES_PORT=str(PG_PORT),
        ENABLE_TRANSACTIONS_EXTENSIONS="true",
    )
    return env


@contextmanager
def running_stac_api(*, startup_timeout: float = 60.0) -> Iterator[str]:
    """Create a database, install pgstac, serve stac-fastapi-pgstac on loopback; yield its base URL; clean up."""
    admin = _admin_connection()
    database = f"geopump_stac_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    proc: subprocess.Popen | None = None
    workdir = tempfile.TemporaryDirectory(prefix="geopump-stac-api-")
    log_path = Path(workdir.name) / "server.log"
    try:
        env = _pg_env(database)
        migrate = subprocess.run(
            [sys.executable, "-m", "pypgstac.pypgstac", "migrate"],
            env=env,
            cwd=workdir.name,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"pypgstac migrate failed ({migrate.returncode}):\n{migrate.stdout}\n{migrate.stderr}")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            # cwd is an empty folder: pydantic-settings would otherwise read a stray `.env` of the checkout.
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=workdir.name,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"stac-fastapi-pgstac exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(url + "/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"stac-fastapi-pgstac did not answer GET / within {startup_timeout:.0f}s:\n{log_path.read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        try:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            admin.close()
            workdir.cleanup()


@pytest.fixture(scope="session")
def stac_api_url() -> Iterator[str]:
    """Base URL of a real stac-fastapi-pgstac (Transactions enabled) in a fresh database, for the whole session."""
    with running_stac_api() as url:
        yield url
