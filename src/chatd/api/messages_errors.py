"""The Messages API's errors: `{"type": "error", "error": {"type", "message"}, "request_id"}`.

Anthropic's error types go with fixed statuses (400 invalid_request_error, 401
authentication_error, 403 permission_error, 404 not_found_error, 413 request_too_large,
429 rate_limit_error, 500 api_error, 529 overloaded_error). The endpoints turn their own
errors into these; `MessagesErrorMiddleware` turns every other error answer on the
Messages API's paths (a bad key, a body too large, a key's rate limit, a draining
server, an unexpected 500, a wrong URL) from the OpenAI shape into this one.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.api.errors import APIError
from chatd.backend import BackendError, BackendOverloaded

PREFIX = "/v1/messages"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# statuses with no Anthropic counterpart: a server that cannot take the request now
# (draining, its queue full) is Anthropic's "overloaded", which clients retry
STATUSES = {503: 529}


def is_messages_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class MessagesError(Exception):
    """An error the client sees as a Messages API error object."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = STATUSES.get(status, status)
        self.type = error_type(self.status)
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
        }
        if request_id is not None:
            body["request_id"] = request_id
        return body

    def response(self, request_id: str | None = None) -> Response:
        return Response(
            orjson.dumps(self.body(request_id)),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def error_type(status: int) -> str:
    """Anthropic's error type for a status ("We may also use [invalid_request_error] for
    other 4XX status codes")."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def messages_error(exc: APIError | BackendError) -> MessagesError:
    """chatd's own error (raised in the OpenAI API's terms) in the Messages API's: with no
    `param` member, the message names the field itself, as Anthropic's do (`field: ...`)."""
    message = exc.message
    if exc.param and exc.param not in message:
        message = f"{exc.param}: {message}"
    status = 529 if isinstance(exc, BackendOverloaded) else exc.status
    return MessagesError(message, status, exc.headers)


def translated(body: bytes, status: int, request_id: str | None) -> bytes:
    """An error body of either shape as the Messages API's, with the request's id."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("type") == "error":
        parsed.setdefault("request_id", request_id)
        return orjson.dumps(parsed)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    return orjson.dumps(MessagesError(message, status).body(request_id))


class MessagesErrorMiddleware:
    """On the Messages API's paths: error answers in its shape, and its `request-id` header.

    Sits just inside the access log, so it sees the answers of every middleware below.
    An error answer is small: it is held until whole, then rewritten.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_messages_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        report = scope.get("state", {}).get("report")
        request_id: str | None = getattr(report, "request_id", None)
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_translated(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if request_id is not None:
                    headers.append((b"request-id", request_id.encode("ascii")))
                message["headers"] = headers
                if message["status"] >= 400:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = translated(b"".join(chunks), held["status"], request_id)
                status = STATUSES.get(held["status"], held["status"])
                kept = [
                    (k, v)
                    for k, v in held["headers"]
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                kept += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ]
                held = None
                await send({"type": "http.response.start", "status": status, "headers": kept})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_translated)
