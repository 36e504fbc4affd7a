"""POST /v1/messages and POST /v1/messages/count_tokens: the Anthropic Messages API.

A second front door over the same `Backend` contract as /v1/chat/completions, so it
serves every model the router does (the local engine and every upstream). Its errors
are the Messages API's (`chatd.api.messages_errors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatd.api.auth import may_use
from chatd.api.completion import check_event
from chatd.api.errors import APIError, server_error
from chatd.api.generation import (
    INCOMPLETE,
    close_events,
    collect_unless_disconnected,
    open_generation,
    overhead,
)
from chatd.api.messages_errors import MessagesError, messages_error
from chatd.api.messages_events import MessageEncoder, sse_error
from chatd.api.messages_request import MessagesRequest, check_version, parse_messages_request
from chatd.api.ratelimit import BYTES_PER_TOKEN
from chatd.api.responses import json_response
from chatd.backend import (
    Backend,
    BackendError,
    Event,
    GenerationFailed,
    SupportsTokenCount,
)
from chatd.router import Router, UnknownModel

log = logging.getLogger("chatd")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def create_message(request: Request) -> Response:
    try:
        return await _create(request)
    except (APIError, BackendError) as exc:
        return messages_error(exc).response()


async def count_tokens(request: Request) -> Response:
    try:
        return await _count(request)
    except (APIError, BackendError) as exc:
        return messages_error(exc).response()


async def _create(request: Request) -> Response:
    started = time.perf_counter()
    check_version(request.headers.get("anthropic-version"))
    parsed = parse_messages_request(await request.body())
    backend = _resolve(request, parsed)
    generation = parsed.to_generation(parsed.model)
    generation.timing.started = started
    # the status line waits for Start, so a refused request is a real HTTP error
    start, events = await open_generation(request, parsed.model, backend, generation)
    encoder = MessageEncoder(start)
    if parsed.stream:
        headers = {**start.headers, **STREAM_HEADERS, **overhead(generation)}
        body = stream_message(encoder, events)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    def take(event: Event) -> None:
        check_event(event, 1)
        encoder.encode(event)

    if not await collect_unless_disconnected(request, events, take):
        return Response(status_code=499)
    if not encoder.complete:
        raise GenerationFailed(INCOMPLETE)
    response = json_response(encoder.result())
    response.headers.update({**start.headers, **overhead(generation)})
    return response


async def _count(request: Request) -> Response:
    """The prompt's tokens by the model's own tokenizer; for a backend without one (another
    vendor's API), an estimate from the prompt's size, said in `x-chatd-token-count`."""
    check_version(request.headers.get("anthropic-version"))
    parsed = parse_messages_request(await request.body(), counting=True)
    backend = _resolve(request, parsed)
    generation = parsed.to_generation(parsed.model)
    if isinstance(backend, SupportsTokenCount):
        return json_response({"input_tokens": await backend.count_tokens(generation)})
    size = len(orjson.dumps([generation.messages, (generation.raw or {}).get("tools")]))
    response = json_response({"input_tokens": max(1, size // BYTES_PER_TOKEN)})
    response.headers["x-chatd-token-count"] = "estimate"
    return response


def _resolve(request: Request, parsed: MessagesRequest) -> Backend:
    """The model's backend (the key's allow-list first), and what that model can read."""
    router: Router = request.app.state.router
    if not may_use(request, parsed.model):
        raise UnknownModel(parsed.model)
    backend = router.resolve(parsed.model)
    caps = backend.capabilities(parsed.model)
    if parsed.images and "image" not in caps.input_modalities:
        where = parsed.images[0]
        raise APIError(
            f"{where}: image blocks are not supported by model '{parsed.model}': it reads "
            "text only.",
            param=where,
        )
    return backend


async def stream_message(
    encoder: MessageEncoder, events: AsyncIterator[Event]
) -> AsyncIterator[bytes]:
    """The events of one answer; message_stop only after a complete one, an error otherwise."""
    try:
        yield encoder.opening()
        async for event in events:
            check_event(event, 1)
            frame = encoder.encode(event)
            if frame:
                yield frame
        if not encoder.complete:
            raise GenerationFailed(INCOMPLETE)
    except (BackendError, APIError) as exc:
        yield sse_error(messages_error(exc))
    except Exception:
        log.exception("stream of %s failed", encoder.id)
        yield sse_error(MessagesError(server_error().message, 500))
    finally:
        await close_events(events)


routes = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
