"""Databases for the store tests: a SQLite file, or a fresh database on the test PostgreSQL.

PostgreSQL comes from CHATD_TEST_PG_URL (`make test` sets it with scripts/postgres.sh).
Outside CI, a missing URL starts the throwaway cluster with that script; in CI it fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgresql"]


def pg_base_url() -> str:
    url = os.environ.get("CHATD_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CHATD_TEST_PG_URL is not set: run the tests with `make test`")
    script = ROOT / "scripts" / "postgres.sh"
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    url = subprocess.run(
        ["bash", str(script), "url"], check=True, capture_output=True, text=True
    ).stdout.strip()
    os.environ["CHATD_TEST_PG_URL"] = url
    return url


async def _admin(url: str, sql: str) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_pg_database() -> str:
    """A new, empty database on the test server; its URL."""
    base = pg_base_url()
    name = f"chatd_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    base = pg_base_url()
    asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_database(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / f'{uuid.uuid4().hex[:8]}' / 'chatd.db'}"
    return fresh_pg_database()


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        drop_pg_database(url)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database on each backend, shared by the session (tests use their own owners)."""
    url = fresh_database(request.param, tmp_path_factory.mktemp("store"))
    yield url
    drop_database(url)
