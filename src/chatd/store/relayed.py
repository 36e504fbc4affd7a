"""Relayed responses: the ids an upstream's own Responses API holds, with owner and upstream.

The upstream keeps the response; chatd keeps who may reach it through which upstream,
so one key never reaches another's response although every request to the upstream
carries chatd's one key. Someone else's id is simply not found, as in `responses.py`.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store.schema import relayed_responses

rr = relayed_responses.c


class _Connections(Protocol):
    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...
    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


class RelayedRows:
    """The relayed-responses part of `SQLStore` (a mixin over its connections)."""

    async def save_relayed(
        self: _Connections, *, owner: str, response_id: str, upstream: str
    ) -> None:
        """Note that `owner` created `response_id` on `upstream` (once: a repeat is kept)."""
        row = {"id": response_id, "owner": owner, "upstream": upstream, "created": int(time.time())}
        try:
            async with self._write() as conn:
                await conn.execute(insert(relayed_responses).values(row))
        except IntegrityError:
            pass  # the same id again (a replayed stream): the first owner keeps it

    async def relayed_upstream(self: _Connections, owner: str, response_id: str) -> str | None:
        """The upstream holding `owner`'s relayed response `response_id`; None if not theirs."""
        query = select(rr.upstream).where(rr.id == response_id, rr.owner == owner)
        async with self._read() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def forget_relayed(self: _Connections, owner: str, response_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                delete(relayed_responses).where(rr.id == response_id, rr.owner == owner)
            )
