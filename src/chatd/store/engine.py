"""Async engines for SQLite (WAL, explicit transactions) and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Begin transactions ourselves: writers take the write lock up front (no upgrade deadlock).

    `sqlite_autocommit` connections (single-statement reads) skip BEGIN altogether.
    """
    options = conn.get_execution_options()
    if options.get("sqlite_autocommit"):
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


async def enable_wal(engine: AsyncEngine, attempts: int = 100) -> None:
    """Put a SQLite database in WAL mode, for good; retried: the switch ignores busy_timeout."""
    for attempt in range(attempts):
        try:
            async with engine.connect() as conn:
                await conn.execution_options(sqlite_autocommit=True)
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)


def write_options(engine: AsyncEngine) -> dict[str, Any]:
    """Execution options of a connection that writes in one transaction."""
    if engine.dialect.name == "sqlite":
        return {"sqlite_immediate": True}
    return {"isolation_level": "READ COMMITTED"}


def read_options(engine: AsyncEngine) -> dict[str, Any]:
    """Execution options of a connection that only reads, a statement at a time."""
    return {"sqlite_autocommit": True} if engine.dialect.name == "sqlite" else {}


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, None for another database or memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def redacted(url: str) -> str:
    """`url` with its password hidden, fit for a log or an error message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(a database URL that cannot be parsed)"


def create_engine(url: str | URL) -> AsyncEngine:
    url = make_url(url)
    options: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    if url.get_backend_name() != "sqlite":
        # Autocommit by default keeps reads and the pre-ping to one round trip each;
        # writers ask for READ COMMITTED (see `write_options`).
        return create_async_engine(
            url, isolation_level="AUTOCOMMIT", pool_pre_ping=True, pool_size=10, **options
        )
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine
