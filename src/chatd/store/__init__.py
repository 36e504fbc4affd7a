"""Stored chat completions: `create_store(settings)` picks the database from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatd.store.base import CompletionStore, InvalidCursor, NotFound, Order, Page
from chatd.store.sql import SQLStore

if TYPE_CHECKING:
    from chatd.config import Settings

__all__ = [
    "CompletionStore",
    "InvalidCursor",
    "NotFound",
    "Order",
    "Page",
    "SQLStore",
    "create_store",
]


def create_store(settings: Settings) -> CompletionStore:
    """SQLite `chatd.db` in the data directory, or the database at `database_url`."""
    return SQLStore(settings.sqlalchemy_url)
