"""OpenAI error objects: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.backend import BackendError

log = logging.getLogger("chatd")


class APIError(Exception):
    """An error the client sees as an OpenAI error object."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def from_backend_error(exc: BackendError) -> APIError:
    return APIError(
        exc.message,
        status=exc.status,
        type=exc.type,
        param=exc.param,
        code=exc.code,
        headers=exc.headers,
    )


def server_error() -> APIError:
    """The generic 500: what went wrong is in the log, not in the answer."""
    return APIError(
        "The server had an error while processing your request. Sorry about that!",
        status=500,
        type="server_error",
    )


def invalid_api_key() -> APIError:
    return APIError(
        "Incorrect API key provided. You can find your API key at your chatd administrator.",
        status=401,
        code="invalid_api_key",
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def handle_backend_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendError)
    return from_backend_error(exc).response()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return APIError(message, status=404).response()
    if exc.status_code == 405:
        message = f"Invalid method for URL ({request.method} {request.url.path})"
        return APIError(message, status=405).response()
    return APIError(str(exc.detail), status=exc.status_code).response()


class UnexpectedErrorMiddleware:
    """Answers an unhandled exception with the OpenAI 500 object and keeps the connection.

    Starlette's own last-resort handler re-raises after answering, and the server then
    drops the connection, so a keep-alive client's next request would fail too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:  # too late for an error object: the server ends the connection
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await server_error().response()(scope, receive, send)
