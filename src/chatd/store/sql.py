"""CompletionStore on SQLAlchemy: SQLite or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import (
    URL,
    delete,
    false,
    insert,
    make_url,
    null,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatd.store.base import InvalidCursor, JSONDict, NotFound, Order, Page
from chatd.store.engine import create_engine, enable_wal, read_options, write_options
from chatd.store.migrate import upgrade
from chatd.store.objects import message_item, message_position, stored_completion, with_metadata
from chatd.store.queries import (
    ANY_SEQ,
    GET,
    LIVE_SEQ,
    list_params,
    list_statement,
    messages_statement,
)
from chatd.store.relayed import RelayedRows
from chatd.store.responses import ResponseRows
from chatd.store.schema import completions, messages, metadata_pairs

c = completions.c
m = messages.c


class SQLStore(ResponseRows, RelayedRows):
    """Stored completions and responses in the tables of `chatd.store.schema`."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store not started")
        return self._engine

    @property
    def sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def start(self) -> None:
        if self._engine is not None:
            return
        engine = create_engine(self.url)
        try:
            if self.sqlite:
                await enable_wal(engine)
            await upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**read_options(self.engine))
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**write_options(self.engine))
            async with conn.begin():
                yield conn

    async def save(self, *, owner: str, request: JSONDict, completion: JSONDict) -> None:
        body = dict(request)
        inputs = body.pop("messages", None) or []
        meta = dict(body.get("metadata") or {})
        created = int(completion.get("created") or time.time())
        row = {
            "id": completion["id"],
            "owner": owner,
            "model": str(body.get("model") or completion.get("model") or ""),
            "created": created,
            "metadata": meta,
            "request": body,
            "response": stored_completion(completion, body),
        }
        async with self._write() as conn:
            result = await conn.execute(insert(completions).values(row).returning(c.seq))
            seq = result.scalar_one()
            if inputs:
                rows = [
                    {"completion_seq": seq, "position": i, "message": message}
                    for i, message in enumerate(inputs)
                ]
                await conn.execute(insert(messages), rows)
            await self._insert_pairs(conn, seq, owner, created, meta)

    async def _insert_pairs(
        self, conn: AsyncConnection, seq: int, owner: str, created: int, meta: dict[str, str]
    ) -> None:
        if meta:
            rows = [
                {"completion_seq": seq, "key": k, "value": v, "owner": owner, "created": created}
                for k, v in meta.items()
            ]
            await conn.execute(insert(metadata_pairs), rows)

    async def get(self, owner: str, completion_id: str) -> JSONDict:
        async with self._read() as conn:
            result = await conn.execute(GET, {"cid": completion_id, "owner": owner})
            row = result.first()
        if row is None:
            raise NotFound(completion_id)
        return with_metadata(row.response, row.metadata)

    async def list(
        self,
        owner: str,
        *,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> Page:
        metadata = metadata or {}
        query = list_statement(len(metadata), model is not None, after is not None, order)
        params = list_params(owner, model, metadata, after, limit)
        async with self._read() as conn:
            rows = (await conn.execute(query, params)).all()
            if not rows and after is not None:
                found = await conn.execute(ANY_SEQ, {"cid": after, "owner": owner})
                if found.first() is None:
                    raise NotFound(after, param="after")
        data = [with_metadata(row.response, row.metadata) for row in rows[:limit]]
        return Page(data, has_more=len(rows) > limit)

    async def update(self, owner: str, completion_id: str, metadata: dict[str, str]) -> JSONDict:
        meta = dict(metadata)
        async with self._write() as conn:
            result = await conn.execute(
                update(completions)
                .where(c.id == completion_id, c.owner == owner, c.deleted == false())
                .values(metadata=meta)
                .returning(c.seq, c.created, c.response)
            )
            row = result.first()
            if row is None:
                raise NotFound(completion_id)
            pairs = metadata_pairs.c
            await conn.execute(delete(metadata_pairs).where(pairs.completion_seq == row.seq))
            await self._insert_pairs(conn, row.seq, owner, row.created, meta)
        return with_metadata(row.response, meta)

    async def delete(self, owner: str, completion_id: str) -> None:
        async with self._write() as conn:
            result = await conn.execute(
                update(completions)
                .where(c.id == completion_id, c.owner == owner, c.deleted == false())
                .values(deleted=True, metadata={}, request=null(), response=null())
                .returning(c.seq)
            )
            seq = result.scalar_one_or_none()
            if seq is None:
                raise NotFound(completion_id)
            await conn.execute(delete(messages).where(m.completion_seq == seq))
            await conn.execute(delete(metadata_pairs).where(metadata_pairs.c.completion_seq == seq))

    async def messages(
        self,
        owner: str,
        completion_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> Page:
        params: dict[str, Any] = {"cid": completion_id, "owner": owner, "limit": limit + 1}
        if after is not None:
            params["after"] = message_position(completion_id, after)
            if params["after"] is None:
                raise InvalidCursor(after)
        query = messages_statement(after is not None, order)
        async with self._read() as conn:
            rows = (await conn.execute(query, params)).all()
            if not rows:
                found = await conn.execute(LIVE_SEQ, {"cid": completion_id, "owner": owner})
                if found.first() is None:
                    raise NotFound(completion_id)
        data = [message_item(completion_id, row.position, row.message) for row in rows[:limit]]
        return Page(data, has_more=len(rows) > limit)
