"""What every front door does with a backend's events: open them, wait for Start, close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

from starlette.requests import Request

from chatd.api.access import observe
from chatd.api.ratelimit import metered
from chatd.backend import Backend, Event, GenerationFailed, GenerationRequest, Start

INCOMPLETE = "The model's answer ended before it was complete."


def open_events(
    request: Request, model: str, backend: Backend, generation: GenerationRequest
) -> AsyncIterator[Event]:
    """The backend's events, observed, cut at a shutdown's deadline and metered to the key."""
    drain = request.app.state.drain
    return aiter(
        observe(
            request, model, drain.guard(metered(request, generation, backend.generate(generation)))
        )
    )


async def first_start(events: AsyncIterator[Event]) -> Start:
    """The first event, which must be Start; what the backend refuses is raised before it."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise GenerationFailed(INCOMPLETE) from None
    if not isinstance(first, Start):
        await close_events(events)
        raise GenerationFailed(f"The backend began with {type(first).__name__}, not Start.")
    return first


async def close_events(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def unless_disconnected(request: Request, work: Awaitable[None]) -> bool:
    """Run `work`; False (and `work` cancelled) if the client left first."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()
    return True
