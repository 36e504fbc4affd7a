"""Stored responses (the Responses API): the rows of `responses` and `response_items`.

A response is saved with the items its model read (the whole chain of a
`previous_response_id` conversation plus its own input), so a later response can
continue from it without walking the chain. Owner isolation is as for completions:
every statement names the owner, and someone else's response is simply not found.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import Integer, bindparam, delete, false, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store.base import InvalidCursor, JSONDict, NotFound, Order, Page
from chatd.store.queries import _keyset
from chatd.store.schema import response_items, responses

r = responses.c
ri = response_items.c


class _Connections(Protocol):
    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...
    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


def _owned() -> list[Any]:
    return [r.id == bindparam("rid"), r.owner == bindparam("owner"), r.deleted == false()]


GET_RESPONSE = select(r.response).where(*_owned())
LIVE_RESPONSE = select(r.seq).where(*_owned())


class ResponseRows:
    """The responses half of `SQLStore` (a mixin over its `_read`/`_write` connections)."""

    async def save_response(
        self: _Connections, *, owner: str, response: JSONDict, items: list[JSONDict]
    ) -> None:
        """Persist a response and the items it read (each with its `id`)."""
        row = {
            "id": response["id"],
            "owner": owner,
            "created": int(response.get("created_at") or time.time()),
            "status": response["status"],
            "response": response,
        }
        async with self._write() as conn:
            seq = (await conn.execute(insert(responses).values(row).returning(r.seq))).scalar_one()
            if items:
                rows = [
                    {"response_seq": seq, "position": i, "item_id": item["id"], "item": item}
                    for i, item in enumerate(items)
                ]
                await conn.execute(insert(response_items), rows)

    async def update_response(
        self: _Connections,
        owner: str,
        response: JSONDict,
        *,
        statuses: Collection[str] = ("queued", "in_progress"),
        events: list[JSONDict] | None = None,
    ) -> bool:
        """Replace a stored response still in one of `statuses` (and its stream's `events`,
        if given); False if it was not in one."""
        values: dict[str, Any] = {"status": response["status"], "response": response}
        if events is not None:
            values["events"] = events
        async with self._write() as conn:
            result = await conn.execute(
                update(responses)
                .where(
                    r.id == response["id"],
                    r.owner == owner,
                    r.deleted == false(),
                    r.status.in_(list(statuses)),
                )
                .values(**values)
                .returning(r.seq)
            )
            return result.first() is not None

    async def get_response(self: _Connections, owner: str, response_id: str) -> JSONDict:
        async with self._read() as conn:
            row = (await conn.execute(GET_RESPONSE, {"rid": response_id, "owner": owner})).first()
        if row is None:
            raise NotFound(response_id)
        return row.response

    async def response_events(
        self: _Connections, owner: str, response_id: str
    ) -> list[JSONDict] | None:
        """The stream events a background response saved; None if it saved none."""
        async with self._read() as conn:
            query = select(r.events).where(*_owned())
            row = (await conn.execute(query, {"rid": response_id, "owner": owner})).first()
        if row is None:
            raise NotFound(response_id)
        return row.events

    async def delete_response(self: _Connections, owner: str, response_id: str) -> None:
        async with self._write() as conn:
            result = await conn.execute(
                update(responses)
                .where(r.id == response_id, r.owner == owner, r.deleted == false())
                .values(deleted=True, response=null(), events=null())
                .returning(r.seq)
            )
            seq = result.scalar_one_or_none()
            if seq is None:
                raise NotFound(response_id)
            await conn.execute(delete(response_items).where(ri.response_seq == seq))

    async def response_context(self: _Connections, owner: str, response_id: str) -> JSONDict:
        """The response and every item its model read, in order: what a next turn continues."""
        async with self._read() as conn:
            row = (await conn.execute(GET_RESPONSE, {"rid": response_id, "owner": owner})).first()
            if row is None:
                raise NotFound(response_id)
            query = (
                select(ri.item)
                .join_from(response_items, responses, r.seq == ri.response_seq)
                .where(*_owned())
                .order_by(ri.position)
            )
            items = (await conn.execute(query, {"rid": response_id, "owner": owner})).scalars()
            return {"response": row.response, "items": list(items)}

    async def response_items(
        self: _Connections,
        owner: str,
        response_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> Page:
        """A page of the items a response read; raises NotFound, InvalidCursor."""
        params: dict[str, Any] = {"rid": response_id, "owner": owner, "limit": limit + 1}
        async with self._read() as conn:
            seq = (await conn.execute(LIVE_RESPONSE, params)).scalar_one_or_none()
            if seq is None:
                raise NotFound(response_id)
            cursor = None
            if after is not None:
                found = (
                    select(ri.position).where(ri.response_seq == seq, ri.item_id == after).limit(1)
                )
                position = (await conn.execute(found)).scalar_one_or_none()
                if position is None:
                    raise InvalidCursor(after)
                cursor = bindparam("after", position, type_=Integer)
            past, order_by = _keyset([ri.position], cursor, order)
            query = (
                select(ri.item)
                .where(ri.response_seq == seq, *past)
                .order_by(*order_by)
                .limit(bindparam("limit", type_=Integer))
            )
            rows = list((await conn.execute(query, params)).scalars())
        return Page(rows[:limit], has_more=len(rows) > limit)
