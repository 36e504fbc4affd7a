"""Graceful shutdown: refuse new requests, give running generations until a deadline.

`Drain.run` (called on SIGTERM by chatd.api.server) starts draining: `DrainMiddleware`
answers new requests 503 with Retry-After, and each generation wrapped in `Drain.guard`
may go on until the deadline, after which it ends with `shutting_down()`, which a stream
sends as its last event (no `[DONE]`: the answer is not complete).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from chatd.api.errors import APIError

log = logging.getLogger("chatd")
T = TypeVar("T")
OPEN_PATHS = frozenset({"/metrics"})  # what a drained server still answers
GRACE_S = 5.0  # after the deadline, for cut streams to send their error event


def shutting_down() -> APIError:
    return APIError(
        "The server is shutting down and could not finish this request. Please retry.",
        status=503,
        type="server_error",
        code="server_shutting_down",
        headers={"retry-after": "1", "connection": "close"},
    )


class Drain:
    """The shutdown state of one app."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # loop time; None while serving
        self.in_flight = 0  # requests the app is handling
        self._timeouts: set[asyncio.Timeout] = set()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def start(self, seconds: float) -> None:
        """Refuse new requests from now; cut running generations in `seconds`."""
        if self.deadline is not None:
            return
        self.deadline = asyncio.get_running_loop().time() + seconds
        for timeout in self._timeouts:
            timeout.reschedule(self.deadline)

    async def run(self, seconds: float) -> None:
        """Drain; return once no request is in flight, or soon after the deadline."""
        self.start(seconds)
        assert self.deadline is not None
        loop = asyncio.get_running_loop()
        log.info("draining: %d requests in flight, %g s to finish", self.in_flight, seconds)
        while self.in_flight and loop.time() < self.deadline + GRACE_S:
            await asyncio.sleep(0.05)
        if self.in_flight:
            log.warning("drained with %d requests still in flight", self.in_flight)

    async def guard(self, events: AsyncIterable[T]) -> AsyncIterator[T]:
        """`events` until the drain deadline; then raises `shutting_down()`."""
        iterator = aiter(events)
        try:
            while True:
                timeout = asyncio.timeout_at(self.deadline)
                try:
                    async with timeout:
                        self._timeouts.add(timeout)  # start() reschedules only entered ones
                        try:
                            event = await anext(iterator)
                        finally:
                            self._timeouts.discard(timeout)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if timeout.expired():
                        raise shutting_down() from None
                    raise
                yield event
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()


class DrainMiddleware:
    """Counts requests in flight; answers 503 once draining."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await shutting_down().response()(scope, receive, send)
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1
