"""One generation as every front door runs it: the backend's events, metered, guarded by the
drain, observed for the access log; `Start` awaited before a status line is sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from starlette.requests import Request

from chatd.api.access import observe
from chatd.api.ratelimit import metered
from chatd.backend import Backend, Event, GenerationFailed, GenerationRequest, Start

INCOMPLETE = "The model's answer ended before it was complete."
T = TypeVar("T")


async def open_generation(
    request: Request, model: str, backend: Backend, generation: GenerationRequest
) -> tuple[Start, AsyncIterator[Event]]:
    """The backend's `Start` and the events after it; a refusal raises before any byte is sent."""
    drain = request.app.state.drain
    # ends with a 503 error at the deadline of a graceful shutdown (chatd.api.drain)
    events = aiter(
        observe(
            request,
            model,
            drain.guard(metered(request, generation, backend.generate(generation))),
        )
    )
    return await start_of(events), events


async def start_of(events: AsyncIterator[Event]) -> Start:
    """The first event, which must be `Start` (GenerationFailed otherwise)."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise GenerationFailed(INCOMPLETE) from None
    if not isinstance(first, Start):
        await close_events(events)
        raise GenerationFailed(f"The backend began with {type(first).__name__}, not Start.")
    return first


def overhead(generation: GenerationRequest) -> dict[str, str]:
    """chatd's own time so far: all of it for the local engine, less the upstream's wait."""
    return {"x-chatd-overhead-ms": f"{generation.timing.overhead_s() * 1000:.3f}"}


async def collect_unless_disconnected(
    request: Request, events: AsyncIterator[T], take: Callable[[T], None]
) -> bool:
    """Pass every event to `take`; False (and the generation cancelled) if the client left."""

    async def drain() -> None:
        async for event in events:
            take(event)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(drain())
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        await close_events(events)
    if work.cancelled():
        return False
    work.result()
    return True


async def close_events(events: AsyncIterator[T]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
