"""Apply the packaged Alembic migrations, one process at a time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from chatd.store.engine import write_options

MIGRATIONS = Path(__file__).with_name("migrations")
PG_LOCK_ID = 0x63686174


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Migrate to head in one transaction holding a lock other starting processes wait on."""
    async with engine.connect() as conn:
        await conn.execution_options(**write_options(engine))
        await conn.begin()
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})
        await conn.run_sync(_upgrade)
        await conn.commit()
