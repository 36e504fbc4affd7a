"""Request bodies: at most `max_bytes`, arriving within `timeout` seconds, counted as read.

A pure ASGI middleware: a declared Content-Length over the limit is answered 413 before a
byte of the body is read; a chunked body is counted as it arrives and answered 413 once it
passes the limit, so no more than the limit is ever held. The rest of an oversized body is
left to the server, which discards it (chatd.api.protocol bounds how long).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.api.errors import APIError

MIB = 1024 * 1024


def body_too_large(max_bytes: int) -> APIError:
    return APIError(
        f"Request body too large: the limit is {max_bytes // MIB} MiB ({max_bytes} bytes).",
        status=413,
        code="request_too_large",
    )


def body_too_slow(timeout: float) -> APIError:
    return APIError(
        f"The request body did not arrive within {timeout:g} seconds.",
        status=408,
        code="request_timeout",
        headers={"connection": "close"},
    )


class BodyRejected(Exception):
    """Raised from `receive` to stop the app; the middleware answers with `error`."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects it
    return None


class BodyReader:
    """`receive` with the body counted and timed."""

    def __init__(self, receive: Receive, max_bytes: int, timeout: float) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.received = 0
        self.done = False
        self.deadline = asyncio.get_running_loop().time() + timeout

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyRejected(body_too_slow(self.timeout)) from None
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.max_bytes:
            raise BodyRejected(body_too_large(self.max_bytes))
        self.done = not message.get("more_body", False)
        return message


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, 408 for one that takes over `timeout` seconds."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await body_too_large(self.max_bytes).response()(scope, receive, send)
            return
        reader = BodyReader(receive, self.max_bytes, self.timeout)
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, reader.receive, send_started)
        except BodyRejected as exc:
            if started:
                raise
            await exc.error.response()(scope, receive, send)
