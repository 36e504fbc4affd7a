"""The Responses API: create, retrieve (or stream again), delete, cancel, input items."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatd.api.auth import may_use
from chatd.api.capabilities import check_capabilities
from chatd.api.chat import STREAM_HEADERS
from chatd.api.completion import check_event
from chatd.api.errors import APIError, from_backend_error, server_error
from chatd.api.generation import (
    INCOMPLETE,
    close_events,
    collect_unless_disconnected,
    open_generation,
    overhead,
)
from chatd.api.oairesponses.items import output_items, to_messages, unique_ids
from chatd.api.oairesponses.output import (
    ResponseWriter,
    replay,
    response_id,
    skeleton,
)
from chatd.api.oairesponses.relay import check_previous, relay_create, relay_stored, relay_target
from chatd.api.oairesponses.request import (
    ResponsesRequest,
    decode,
    parse_responses_request,
    renamed,
)
from chatd.api.oairesponses.runs import Run, Runs
from chatd.api.responses import json_response
from chatd.api.stored import parse_limit, storable
from chatd.backend import (
    Backend,
    BackendError,
    ContextLengthExceeded,
    Event,
    GenerationFailed,
    GenerationRequest,
    Start,
)
from chatd.router import UnknownModel
from chatd.store import CompletionStore, InvalidCursor, NotFound

log = logging.getLogger("chatd")
RUNNING = ("queued", "in_progress")
SHUT_DOWN = "The server shut down before the response was complete."


def not_found(rid: str) -> APIError:
    return APIError(f"Response with id '{rid}' not found.", status=404)


def store_of(request: Request) -> CompletionStore:
    return request.app.state.store


def runs_of(request: Request) -> Runs:
    return request.app.state.response_runs


def owner_of(request: Request) -> str:
    return request.state.principal


def frame(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def frames(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(frame(event) for event in events)


async def context_items(request: Request, req: ResponsesRequest) -> list[dict[str, Any]]:
    """What the model reads: the previous response's items and output, then this input."""
    if req.previous_response_id is None:
        return unique_ids(req.input)
    previous = req.previous_response_id
    await check_previous(request, previous, None)
    try:
        if not storable(previous):
            raise NotFound(previous)
        context = await store_of(request).response_context(owner_of(request), previous)
    except NotFound:
        raise APIError(
            f"Previous response with id '{previous}' not found.",
            status=404,
            param="previous_response_id",
        ) from None
    if context["response"]["status"] in RUNNING:
        raise APIError(
            f"Previous response with id '{previous}' is still in progress.",
            param="previous_response_id",
        )
    return unique_ids([*context["items"], *output_items(context["response"]["output"]), *req.input])


def drop_oldest(messages: list[dict[str, Any]]) -> bool:
    """Truncation `auto`: drop the oldest turn (and tool outputs it leaves without a call)."""
    turns = [i for i, message in enumerate(messages) if message["role"] not in ("system",)]
    if len(turns) < 2:
        return False
    first = turns[0]
    del messages[first]
    while first < len(messages) - 1 and messages[first]["role"] == "tool":
        del messages[first]
    return True


async def begin(
    request: Request, req: ResponsesRequest, backend: Backend, generation: GenerationRequest
) -> tuple[AsyncIterator[Event], Start]:
    """The backend's events past Start; a refusal raised in the Responses API's terms."""
    try:
        while True:
            try:
                start, events = await open_generation(request, req.model, backend, generation)
                return events, start
            except ContextLengthExceeded:
                if req.truncation != "auto" or not drop_oldest(generation.messages):
                    raise
    except BackendError as exc:
        raise renamed(from_backend_error(exc)) from None


def began(response: dict[str, Any], start: Start) -> None:
    """What the backend's Start says of the answer: the model and the tier that served it."""
    response["model"] = start.model
    response["service_tier"] = start.service_tier or "default"


async def create_response(request: Request) -> Response:
    started = time.perf_counter()
    data = await request.body()
    raw = decode(data)
    target = relay_target(request, raw.get("model"))
    if target is not None:
        if not may_use(request, raw["model"]):
            raise UnknownModel(raw["model"])
        return await relay_create(request, raw, target, started)
    req = parse_responses_request(data)
    if not may_use(request, req.model):
        raise UnknownModel(req.model)
    backend = request.app.state.router.resolve(req.model)
    items = await context_items(request, req)
    chat = req.chat_request(req.chat_body(to_messages(items, req.instructions)))
    try:
        check_capabilities(chat.raw, backend.capabilities(req.model), req.model)
    except APIError as exc:
        raise renamed(exc) from None
    generation = chat.to_generation(req.model)
    generation.timing.started = started
    response = skeleton(req, response_id(), req.model)
    if req.background:
        return await start_background(request, req, backend, generation, response, items)
    events, start = await begin(request, req, backend, generation)
    began(response, start)
    writer = ResponseWriter(response, req.logprobs)
    headers = {**start.headers, **overhead(generation)}
    if req.stream:
        body = stream_events(request, req, writer, events, items)
        return StreamingResponse(
            body, media_type="text/event-stream", headers={**headers, **STREAM_HEADERS}
        )

    def take(event: Event) -> None:
        check_event(event, 1)
        writer.add(event)

    if not await collect_unless_disconnected(request, events, take):
        return Response(status_code=499)
    if not writer.complete:
        raise GenerationFailed(INCOMPLETE)
    writer.closing()
    if req.store:
        await store_of(request).save_response(
            owner=owner_of(request), response=response, items=items
        )
    answer = json_response(response)
    answer.headers.update(headers)
    return answer


def failure(exc: BaseException) -> APIError:
    if isinstance(exc, BackendError):
        return from_backend_error(exc)
    if isinstance(exc, APIError):
        return exc
    log.exception("response failed", exc_info=exc)
    return server_error()


async def stream_events(
    request: Request,
    req: ResponsesRequest,
    writer: ResponseWriter,
    events: AsyncIterator[Event],
    items: list[dict[str, Any]],
) -> AsyncIterator[bytes]:
    """The events of one response; a failure ends it with `error` and `response.failed`."""
    try:
        yield frames(writer.opening())
        async for event in events:
            check_event(event, 1)
            out = writer.add(event)
            if out:
                yield frames(out)
        if not writer.complete:
            raise GenerationFailed(INCOMPLETE)
        closing = writer.closing()
        if req.store:
            await store_of(request).save_response(
                owner=owner_of(request), response=writer.response, items=items
            )
        yield frames(closing)
    except Exception as exc:
        yield frames(writer.failing(failure(exc)))
    finally:
        await close_events(events)


async def start_background(
    request: Request,
    req: ResponsesRequest,
    backend: Backend,
    generation: GenerationRequest,
    response: dict[str, Any],
    items: list[dict[str, Any]],
) -> Response:
    """Save the response as queued, generate it in a task, answer at once (or follow it)."""
    owner = owner_of(request)
    response["status"] = "queued"
    await store_of(request).save_response(owner=owner, response=response, items=items)
    answer = copy.deepcopy(response)
    run = Run(response["id"], owner)
    runs_of(request).add(run)
    work = run_background(request, req, backend, generation, response, run)
    run.task = asyncio.create_task(work)
    if req.stream:
        body = (frame(event) async for event in run.follow())
        return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)
    return json_response(answer)


async def run_background(
    request: Request,
    req: ResponsesRequest,
    backend: Backend,
    generation: GenerationRequest,
    response: dict[str, Any],
    run: Run,
) -> None:
    store, owner = store_of(request), run.owner
    response["status"] = "in_progress"
    writer = ResponseWriter(response, req.logprobs)
    run.publish(writer.opening())
    events: AsyncIterator[Event] | None = None
    try:
        if not await store.update_response(owner, copy.deepcopy(response)):
            return  # cancelled (or deleted) before it began
        events, start = await begin(request, req, backend, generation)
        began(response, start)
        async for event in events:
            check_event(event, 1)
            run.publish(writer.add(event))
        if not writer.complete:
            raise GenerationFailed(INCOMPLETE)
        closing = writer.closing()
        await store.update_response(owner, response, events=[*run.events, *closing])
        run.publish(closing)
    except asyncio.CancelledError:
        if run.cancelled:
            response["status"] = "cancelled"
        else:
            run.publish(writer.failing(APIError(SHUT_DOWN, status=503, type="server_error")))
        await store.update_response(owner, response, events=run.events)
    except Exception as exc:
        run.publish(writer.failing(failure(exc)))
        await store.update_response(owner, response, events=run.events)
    finally:
        if events is not None:
            await close_events(events)
        run.finish()
        runs_of(request).remove(run)


def response_id_of(request: Request) -> str:
    rid: str = request.path_params["response_id"]
    if not storable(rid):
        raise not_found(rid)
    return rid


async def stored_response(request: Request, rid: str) -> dict[str, Any]:
    try:
        return await store_of(request).get_response(owner_of(request), rid)
    except NotFound:
        raise not_found(rid) from None


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value in (None, "", "false", "False", "0"):
        return False
    if value in ("true", "True", "1"):
        return True
    raise APIError(
        f"Invalid type for '{name}': expected a boolean, but got a string instead.",
        param=name,
        code="invalid_type",
    )


def _starting_after(request: Request) -> int | None:
    value = request.query_params.get("starting_after")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise APIError(
            "Invalid type for 'starting_after': expected an integer, but got a string instead.",
            param="starting_after",
            code="invalid_type",
        ) from None


async def relayed_upstream(request: Request, rid: str) -> str | None:
    """The upstream holding this caller's relayed response `rid` (None: chatd's own, or none)."""
    return await store_of(request).relayed_upstream(owner_of(request), rid)


async def retrieve_response(request: Request) -> Response:
    rid = response_id_of(request)
    upstream = await relayed_upstream(request, rid)
    if upstream is not None:
        return await relay_stored(request, upstream, rid)
    stream = _flag(request, "stream")
    after = _starting_after(request)
    stored = await stored_response(request, rid)
    if not stream:
        return json_response(stored)
    run = runs_of(request).get(rid, owner_of(request))
    body: AsyncIterator[bytes]
    if run is not None:
        body = (frame(event) async for event in run.follow(after))
    else:
        saved = await store_of(request).response_events(owner_of(request), rid)
        events = [
            e for e in saved or replay(stored) if after is None or e["sequence_number"] > after
        ]
        body = _iterate(frames(events))
    return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)


async def _iterate(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def delete_response(request: Request) -> Response:
    rid = response_id_of(request)
    upstream = await relayed_upstream(request, rid)
    if upstream is not None:
        return await relay_stored(request, upstream, rid)
    run = runs_of(request).get(rid, owner_of(request))
    if run is not None:
        await _cancel(request, run)
    try:
        await store_of(request).delete_response(owner_of(request), rid)
    except NotFound:
        raise not_found(rid) from None
    return json_response({"id": rid, "object": "response", "deleted": True})


async def _cancel(request: Request, run: Run) -> None:
    """Stop a run of this process; it saves itself as cancelled (if it had started)."""
    run.cancelled = True
    if run.task is not None and not run.task.done():
        run.task.cancel()
        await asyncio.wait([run.task])
    run.finish()  # a task cancelled before it began never finishes its run itself
    runs_of(request).remove(run)


async def cancel_response(request: Request) -> Response:
    rid = response_id_of(request)
    upstream = await relayed_upstream(request, rid)
    if upstream is not None:
        return await relay_stored(request, upstream, rid, "/cancel")
    owner = owner_of(request)
    stored = await stored_response(request, rid)
    if not stored.get("background"):
        raise APIError(
            "Only responses created with `background` set to true can be cancelled.",
            param="response_id",
        )
    if stored["status"] not in (*RUNNING, "cancelled"):
        raise APIError(
            f"Cannot cancel a response with status '{stored['status']}'.", param="response_id"
        )
    run = runs_of(request).get(rid, owner)
    if run is not None:
        await _cancel(request, run)
    current = await stored_response(request, rid)
    # not begun, or generated by another instance (or lost with one): its result is dropped
    if current["status"] in RUNNING:
        current["status"] = "cancelled"
        await store_of(request).update_response(owner, current)
    return json_response(current)


ORDERS = ("asc", "desc")


async def list_input_items(request: Request) -> Response:
    rid = response_id_of(request)
    upstream = await relayed_upstream(request, rid)
    if upstream is not None:
        return await relay_stored(request, upstream, rid, "/input_items")
    params = request.query_params
    limit = parse_limit(params)
    order = params.get("order") or "desc"
    if order not in ORDERS:
        raise APIError(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    after = params.get("after") or None
    try:
        if after is not None and not storable(after):
            await store_of(request).get_response(owner_of(request), rid)
            raise InvalidCursor(after)
        page = await store_of(request).response_items(
            owner_of(request),
            rid,
            after=after,
            limit=limit,
            order="asc" if order == "asc" else "desc",
        )
    except NotFound:
        raise not_found(rid) from None
    except InvalidCursor as exc:
        raise APIError(
            f"Invalid 'after': '{exc.after}' is not the id of an input item of response '{rid}'.",
            param="after",
            code="invalid_value",
        ) from None
    return json_response(page.body())


routes = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
