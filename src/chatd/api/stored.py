"""The stored-completion endpoints: list, retrieve, update, delete, list messages."""

from __future__ import annotations

import re

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.api.errors import APIError
from chatd.api.metadata import validate_metadata
from chatd.api.responses import json_response
from chatd.api.validation import json_type
from chatd.store import CompletionStore, InvalidCursor, NotFound, Order

MAX_LIMIT = 100
METADATA_PARAM = re.compile(r"metadata\[(.+)\]")


def not_found(completion_id: str, param: str | None = None) -> APIError:
    return APIError(f"No chat completion found with id '{completion_id}'.", status=404, param=param)


def storable(text: str) -> bool:
    """Whether `text` can be stored at all: PostgreSQL's text holds no null character.

    No id chatd makes contains one, so such an id is unknown without asking the store.
    """
    return "\x00" not in text


EMPTY_PAGE: dict[str, object] = {
    "object": "list",
    "data": [],
    "first_id": None,
    "last_id": None,
    "has_more": False,
}


def parse_limit(params: QueryParams) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return 20
    try:
        limit = int(raw)
    except ValueError:
        raise APIError(
            "Invalid type for 'limit': expected an integer, but got a string instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < 1:
        raise APIError(
            f"Invalid 'limit': integer below minimum value. Expected a value >= 1, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > MAX_LIMIT:
        raise APIError(
            f"Invalid 'limit': integer above maximum value. Expected a value <= {MAX_LIMIT}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return limit


_ORDERS: dict[str, Order] = {"asc": "asc", "desc": "desc"}


def parse_order(params: QueryParams) -> Order:
    raw = params.get("order") or "asc"
    order = _ORDERS.get(raw)
    if order is None:
        raise APIError(
            f"Invalid value: '{raw}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return order


def parse_metadata_filter(params: QueryParams) -> dict[str, str]:
    """`metadata[key]=value` pairs (the SDK's encoding); a repeated key keeps its last value."""
    pairs: dict[str, str] = {}
    for name, value in params.multi_items():
        match = METADATA_PARAM.fullmatch(name)
        if match:
            pairs[match.group(1)] = value
    return validate_metadata(pairs)


def store_of(request: Request) -> CompletionStore:
    return request.app.state.store


def owner_of(request: Request) -> str:
    return request.state.principal


async def list_completions(request: Request) -> Response:
    params = request.query_params
    limit, order = parse_limit(params), parse_order(params)
    metadata = parse_metadata_filter(params)
    after = params.get("after") or None
    model = params.get("model") or None
    if after is not None and not storable(after):
        raise not_found(after, "after")
    if model is not None and not storable(model):
        return json_response(EMPTY_PAGE)
    try:
        page = await store_of(request).list(
            owner_of(request),
            model=model,
            metadata=metadata or None,
            after=after,
            limit=limit,
            order=order,
        )
    except NotFound as exc:
        raise not_found(exc.completion_id, exc.param) from None
    return json_response(page.body())


def completion_id_of(request: Request) -> str:
    completion_id: str = request.path_params["completion_id"]
    if not storable(completion_id):
        raise not_found(completion_id)
    return completion_id


async def retrieve_completion(request: Request) -> Response:
    completion_id = completion_id_of(request)
    try:
        return json_response(await store_of(request).get(owner_of(request), completion_id))
    except NotFound:
        raise not_found(completion_id) from None


async def read_update_body(request: Request) -> dict[str, str]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise APIError(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise APIError(
            f"Invalid type for body: expected an object, but got {json_type(body)} instead.",
            code="invalid_type",
        )
    unknown = [name for name in body if name != "metadata"]
    if unknown:
        raise APIError(f"Unrecognized request argument supplied: {unknown[0]}")
    if "metadata" not in body:
        raise APIError(
            "Missing required parameter: 'metadata'.",
            param="metadata",
            code="missing_required_parameter",
        )
    return validate_metadata(body["metadata"])


async def update_completion(request: Request) -> Response:
    completion_id = completion_id_of(request)
    metadata = await read_update_body(request)
    try:
        updated = await store_of(request).update(owner_of(request), completion_id, metadata)
    except NotFound:
        raise not_found(completion_id) from None
    return json_response(updated)


async def delete_completion(request: Request) -> Response:
    completion_id = completion_id_of(request)
    try:
        await store_of(request).delete(owner_of(request), completion_id)
    except NotFound:
        raise not_found(completion_id) from None
    deleted = {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}
    return json_response(deleted)


async def list_messages(request: Request) -> Response:
    completion_id = completion_id_of(request)
    params = request.query_params
    limit, order = parse_limit(params), parse_order(params)
    after = params.get("after") or None
    try:
        if after is not None and not storable(after):
            await store_of(request).get(owner_of(request), completion_id)  # 404 comes first
            raise InvalidCursor(after)
        page = await store_of(request).messages(
            owner_of(request), completion_id, after=after, limit=limit, order=order
        )
    except NotFound:
        raise not_found(completion_id) from None
    except InvalidCursor as exc:
        raise APIError(
            f"Invalid 'after': '{exc.after}' is not the id of a message of "
            f"chat completion '{completion_id}'.",
            param="after",
            code="invalid_value",
        ) from None
    return json_response(page.body())


routes = [
    Route("/v1/chat/completions", list_completions, methods=["GET"]),
    Route(
        "/v1/chat/completions/{completion_id}",
        retrieve_completion,
        methods=["GET"],
        name="retrieve_completion",
    ),
    Route(
        "/v1/chat/completions/{completion_id}",
        update_completion,
        methods=["POST"],
        name="update_completion",
    ),
    Route(
        "/v1/chat/completions/{completion_id}",
        delete_completion,
        methods=["DELETE"],
        name="delete_completion",
    ),
    Route("/v1/chat/completions/{completion_id}/messages", list_messages, methods=["GET"]),
]
