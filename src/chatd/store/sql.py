"""CompletionStore on SQLAlchemy: SQLite or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Select,
    delete,
    exists,
    false,
    insert,
    literal,
    make_url,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatd.store.base import InvalidCursor, JSONDict, NotFound, Order, Page
from chatd.store.engine import create_engine
from chatd.store.migrate import upgrade
from chatd.store.objects import message_item, message_position, stored_completion, with_metadata
from chatd.store.schema import completions, messages, metadata_pairs

c = completions.c
m = messages.c


def _keyset(
    sort: Sequence[ColumnElement[Any]], cursor: ColumnElement[Any] | None, order: Order
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[Any]]]:
    """The WHERE clause past `cursor` and the ORDER BY, both on the `sort` columns."""
    where: list[ColumnElement[bool]] = []
    if cursor is not None:
        key = tuple_(*sort) if len(sort) > 1 else sort[0]
        where.append(key > cursor if order == "asc" else key < cursor)
    order_by = [col.asc() if order == "asc" else col.desc() for col in sort]
    return where, order_by


class SQLStore:
    """Stored completions in the tables of `chatd.store.schema`."""

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
            if self.sqlite:
                await conn.execution_options(sqlite_autocommit=True)
            else:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if self.sqlite:
                await conn.execution_options(sqlite_immediate=True)
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
        query = select(c.response, c.metadata).where(
            c.id == completion_id, c.owner == owner, c.deleted == false()
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(completion_id)
        return with_metadata(row.response, row.metadata)

    def _list_query(
        self,
        owner: str,
        model: str | None,
        metadata: dict[str, str] | None,
        after: str | None,
        limit: int,
        order: Order,
    ) -> Select[Any]:
        cursor = None
        if after is not None:
            row = completions.alias("cursor")
            found = select(row.c.created, row.c.seq).where(row.c.id == after, row.c.owner == owner)
            cursor = found.scalar_subquery()
        query = select(c.response, c.metadata)
        where: list[ColumnElement[bool]] = [c.owner == owner, c.deleted == false()]
        sort: list[ColumnElement[Any]] = [c.created, c.seq]
        if metadata:
            (key, value), *others = metadata.items()
            lead = metadata_pairs.alias("m0")
            query = query.select_from(lead.join(completions, c.seq == lead.c.completion_seq))
            where += [lead.c.owner == owner, lead.c.key == key, lead.c.value == value]
            sort = [lead.c.created, lead.c.completion_seq]
            for i, (key, value) in enumerate(others, 1):
                pair = metadata_pairs.alias(f"m{i}")
                where.append(
                    exists().where(
                        pair.c.completion_seq == lead.c.completion_seq,
                        pair.c.key == key,
                        pair.c.value == value,
                    )
                )
        if model is not None:
            where.append(c.model == model)
        past, order_by = _keyset(sort, cursor, order)
        return query.where(*where, *past).order_by(*order_by).limit(limit + 1)

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
        query = self._list_query(owner, model, metadata, after, limit, order)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
            if not rows and after is not None:
                found = select(c.seq).where(c.id == after, c.owner == owner)
                if (await conn.execute(found)).first() is None:
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
        cursor = None
        if after is not None:
            position = message_position(completion_id, after)
            if position is None:
                raise InvalidCursor(after)
            cursor = literal(position)
        past, order_by = _keyset([m.position], cursor, order)
        query = (
            select(m.position, m.message)
            .join_from(messages, completions, c.seq == m.completion_seq)
            .where(c.id == completion_id, c.owner == owner, c.deleted == false(), *past)
            .order_by(*order_by)
            .limit(limit + 1)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                found = select(c.seq).where(
                    c.id == completion_id, c.owner == owner, c.deleted == false()
                )
                if (await conn.execute(found)).first() is None:
                    raise NotFound(completion_id)
        data = [message_item(completion_id, row.position, row.message) for row in rows[:limit]]
        return Page(data, has_more=len(rows) > limit)
