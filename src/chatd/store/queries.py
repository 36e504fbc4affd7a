"""The store's read statements, built once per shape with bound parameters."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    exists,
    false,
    select,
    tuple_,
)

from chatd.store.base import Order
from chatd.store.schema import completions, messages, metadata_pairs

c = completions.c
m = messages.c
CURSOR = completions.alias("cursor")
PAIRS = [metadata_pairs.alias(f"m{i}") for i in range(16)]
MAX_FILTERS = len(PAIRS)


def _owned(include_deleted: bool = False) -> list[ColumnElement[bool]]:
    where = [c.id == bindparam("cid"), c.owner == bindparam("owner")]
    return where if include_deleted else [*where, c.deleted == false()]


GET = select(c.response, c.metadata).where(*_owned())
LIVE_SEQ = select(c.seq).where(*_owned())
ANY_SEQ = select(c.seq).where(*_owned(include_deleted=True))


def _keyset(
    sort: Sequence[ColumnElement[Any]], cursor: ColumnElement[Any] | None, order: Order
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[Any]]]:
    """The WHERE clause past `cursor` and the ORDER BY, both on the `sort` columns."""
    where: list[ColumnElement[bool]] = []
    if cursor is not None:
        key = tuple_(*sort) if len(sort) > 1 else sort[0]
        where.append(key > cursor if order == "asc" else key < cursor)
    order_by: list[ColumnElement[Any]] = [
        col.asc() if order == "asc" else col.desc() for col in sort
    ]
    return where, order_by


@cache
def list_statement(filters: int, model: bool, after: bool, order: Order) -> Select[Any]:
    """A page of completions: `filters` metadata pairs, a model, a cursor (all bound later).

    With a metadata filter the page is read in order from the pair index of the first
    pair; the other pairs are probed per row.
    """
    if filters > MAX_FILTERS:
        raise ValueError(f"at most {MAX_FILTERS} metadata filters")
    owner: BindParameter[str] = bindparam("owner")
    query = select(c.response, c.metadata)
    where: list[ColumnElement[bool]] = [c.owner == owner, c.deleted == false()]
    sort: list[ColumnElement[Any]] = [c.created, c.seq]
    if filters:
        lead = PAIRS[0].c
        query = query.select_from(PAIRS[0].join(completions, c.seq == lead.completion_seq))
        where += [lead.owner == owner, lead.key == bindparam("k0"), lead.value == bindparam("v0")]
        sort = [lead.created, lead.completion_seq]
        for i in range(1, filters):
            pair = PAIRS[i].c
            where.append(
                exists().where(
                    pair.completion_seq == lead.completion_seq,
                    pair.key == bindparam(f"k{i}"),
                    pair.value == bindparam(f"v{i}"),
                )
            )
    if model:
        where.append(c.model == bindparam("model"))
    cursor = None
    if after:
        row = CURSOR.c
        found = select(row.created, row.seq).where(row.id == bindparam("after"), row.owner == owner)
        cursor = found.scalar_subquery()
    past, order_by = _keyset(sort, cursor, order)
    limit = bindparam("limit", type_=Integer)
    return query.where(*where, *past).order_by(*order_by).limit(limit)


def list_params(
    owner: str, model: str | None, metadata: dict[str, str], after: str | None, limit: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"owner": owner, "limit": limit + 1}
    if model is not None:
        params["model"] = model
    if after is not None:
        params["after"] = after
    for i, (key, value) in enumerate(metadata.items()):
        params[f"k{i}"], params[f"v{i}"] = key, value
    return params


@cache
def messages_statement(after: bool, order: Order) -> Select[Any]:
    """A page of a completion's input messages, past position `after` if given."""
    cursor = bindparam("after", type_=Integer) if after else None
    past, order_by = _keyset([m.position], cursor, order)
    return (
        select(m.position, m.message)
        .join_from(messages, completions, c.seq == m.completion_seq)
        .where(*_owned(), *past)
        .order_by(*order_by)
        .limit(bindparam("limit", type_=Integer))
    )
