"""POST /v1/chat/completions."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatd.api.auth import may_use
from chatd.api.capabilities import check_capabilities
from chatd.api.completion import ChunkEncoder, CompletionBuilder, Envelope, check_event
from chatd.api.errors import APIError, from_backend_error, server_error
from chatd.api.generation import (
    INCOMPLETE,
    close_events,
    collect_unless_disconnected,
    open_generation,
    overhead,
)
from chatd.api.responses import json_response
from chatd.api.schemas import ChatRequest, parse_chat_request
from chatd.api.sse import DONE, sse_error, sse_event
from chatd.backend import BackendError, Event, GenerationFailed
from chatd.router import Router, UnknownModel

log = logging.getLogger("chatd")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def create_chat_completion(request: Request) -> Response:
    started = time.perf_counter()
    chat = parse_chat_request(await request.body())
    router: Router = request.app.state.router
    if not may_use(request, chat.model):
        raise UnknownModel(chat.model)
    backend = router.resolve(chat.model)
    check_capabilities(chat.raw, backend.capabilities(chat.model), chat.model)
    generation = chat.to_generation(chat.model)
    generation.timing.started = started
    # the status line waits for Start, so a refused request is a real HTTP error
    start, events = await open_generation(request, chat.model, backend, generation)
    envelope = Envelope.of(start, generation.n, generation.logprobs, generation.legacy_functions)
    if chat.stream:
        body = stream_events(request, chat, envelope, events)
        headers = {**start.headers, **STREAM_HEADERS, **overhead(generation)}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
    builder = CompletionBuilder(envelope)

    def take(event: Event) -> None:
        check_event(event, generation.n)
        builder.add(event)

    if not await collect_unless_disconnected(request, events, take):
        return Response(status_code=499)
    if not builder.complete:
        raise GenerationFailed(INCOMPLETE)
    completion = builder.result()
    if chat.store:
        await save(request, chat, completion)
    response = json_response(completion)
    response.headers.update({**start.headers, **overhead(generation)})
    return response


async def stream_events(
    request: Request, chat: ChatRequest, envelope: Envelope, events: AsyncIterator[Event]
) -> AsyncIterator[bytes]:
    """The chunks of one answer; `[DONE]` only after a complete one, an error event otherwise."""
    encoder = ChunkEncoder(envelope, chat.include_usage)
    builder = CompletionBuilder(envelope) if chat.store else None
    try:
        yield b"".join(sse_event(chunk) for chunk in encoder.opening())
        async for event in events:
            check_event(event, envelope.n)
            if builder is not None:
                builder.add(event)
            chunk = encoder.encode(event)
            if chunk is not None:
                yield sse_event(chunk)
        if not encoder.complete:
            raise GenerationFailed(INCOMPLETE)
        if builder is not None:
            await save(request, chat, builder.result())
        yield DONE
    except BackendError as exc:
        yield sse_error(from_backend_error(exc))
    except APIError as exc:
        yield sse_error(exc)
    except Exception:
        log.exception("stream of %s failed", envelope.id)
        yield sse_error(server_error())
    finally:
        await close_events(events)


async def save(request: Request, chat: ChatRequest, completion: dict[str, Any]) -> None:
    store = request.app.state.store
    await store.save(owner=request.state.principal, request=chat.raw, completion=completion)


routes = [
    Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
    # the gateway path some clients are written against: the same endpoint
    Route("/v4/beta/chat/completions", create_chat_completion, methods=["POST"]),
]
