"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatd.api.completion import ChunkEncoder, CompletionBuilder, Envelope
from chatd.api.errors import APIError
from chatd.api.responses import json_response
from chatd.api.schemas import ChatRequest, parse_chat_request
from chatd.api.sse import DONE, sse_error, sse_event
from chatd.backend import Event
from chatd.router import Router

log = logging.getLogger("chatd")

INCOMPLETE = APIError(
    "The server had an error while processing your request. Sorry about that!",
    status=500,
    type="server_error",
)


async def create_chat_completion(request: Request) -> Response:
    chat = parse_chat_request(await request.body())
    router: Router = request.app.state.router
    backend = router.resolve(chat.model)
    generation = chat.to_generation(chat.model)
    envelope = Envelope(
        model=chat.model,
        system_fingerprint=backend.system_fingerprint,
        n=generation.n,
        logprobs=generation.logprobs,
        legacy_functions=generation.legacy_functions,
    )
    # ends with a 503 error at the deadline of a graceful shutdown (chatd.api.drain)
    events = request.app.state.drain.guard(backend.generate(generation))
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise INCOMPLETE from None
    if chat.stream:
        body = stream_events(request, chat, envelope, first, events)
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    builder = CompletionBuilder(envelope)
    builder.add(first)
    if not await collect_unless_disconnected(request, events, builder):
        return Response(status_code=499)
    if not builder.complete:
        raise INCOMPLETE
    completion = builder.result()
    if chat.store:
        await save(request, chat, completion)
    return json_response(completion)


async def collect_unless_disconnected(
    request: Request, events: AsyncIterator[Event], builder: CompletionBuilder
) -> bool:
    """Drain events into builder; False (and the generation cancelled) if the client left."""

    async def drain() -> None:
        async for event in events:
            builder.add(event)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(drain())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if work.done():
        work.result()
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return False


async def stream_events(
    request: Request,
    chat: ChatRequest,
    envelope: Envelope,
    first: Event,
    events: AsyncIterator[Event],
) -> AsyncIterator[bytes]:
    encoder = ChunkEncoder(envelope, chat.include_usage)
    builder = CompletionBuilder(envelope) if chat.store else None
    try:
        yield b"".join(sse_event(chunk) for chunk in encoder.opening())
        pending: Event | None = first
        while pending is not None:
            if builder is not None:
                builder.add(pending)
            chunk = encoder.encode(pending)
            if chunk is not None:
                yield sse_event(chunk)
            pending = await anext(events, None)
        if builder is not None:
            if not builder.complete:
                yield sse_error(INCOMPLETE)
                return
            await save(request, chat, builder.result())
        yield DONE
    except APIError as exc:
        yield sse_error(exc)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def save(request: Request, chat: ChatRequest, completion: dict[str, Any]) -> None:
    store = request.app.state.store
    await store.save(owner=request.state.principal, request=chat.raw, completion=completion)


routes = [Route("/v1/chat/completions", create_chat_completion, methods=["POST"])]
