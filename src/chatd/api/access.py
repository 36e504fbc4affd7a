"""Request ids, `openai-processing-ms`, and one access-log line per request (at its end)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.backend import Event, RefusalDelta, TextDelta, ToolCallDelta, Usage
from chatd.telemetry import REGISTRY

log = logging.getLogger("chatd.access")

# a client's own id is echoed when it is short and plain (no spaces, quotes or controls)
CLIENT_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
CONTENT = (TextDelta, RefusalDelta, ToolCallDelta)

REQUESTS = Counter(
    "chatd_http_requests",
    "HTTP requests answered, by method, route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "chatd_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a stream's last byte)",
    ["route"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
TTFT = Histogram(
    "chatd_time_to_first_token_seconds",
    "Time from a chat completion's arrival to its first generated content",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


@dataclass(slots=True)
class Report:
    """What an endpoint tells the access log about its request (scope state `report`)."""

    request_id: str
    start: float
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token: float | None = None
    upstream_request_id: str | None = None


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's `x-request-id` when it is plain enough to echo, else a fresh `req_...`."""
    for name, value in headers:
        if name == b"x-request-id":
            if CLIENT_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def observe(request: Request, model: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """`events`, noting the model, the first content's time and the usage on the report."""
    report: Report | None = request.scope.get("state", {}).get("report")
    if report is None:
        return events
    report.model = model
    return _observed(report, events)


async def _observed(report: Report, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    try:
        async for event in events:
            if report.first_token is None and isinstance(event, CONTENT):
                report.first_token = time.perf_counter()
            elif type(event) is Usage:
                report.prompt_tokens = event.prompt_tokens
                report.completion_tokens = event.completion_tokens
            yield event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def route_of(scope: Scope) -> str:
    """The matched route's template (`/v1/chat/completions/{completion_id}`): few label values."""
    path: str = scope.get("path", "")
    if "endpoint" not in scope:
        return "/static" if path.startswith("/static/") else "other"
    for name, value in scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}", 1)
    return path


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class AccessLogMiddleware:
    """Gives every request an id (`x-request-id`), times its head (`openai-processing-ms`),
    and logs one line when its answer has been sent; never a body, never a key.

    An upstream's own `x-request-id` (a gateway backend's `Start.headers`) is passed on
    as `x-upstream-request-id`: the client's and the log's id is always chatd's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        report = Report(request_id_of(scope["headers"]), time.perf_counter())
        scope.setdefault("state", {})["report"] = report
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = self._headers(report, message.get("headers", []))
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._log(scope, report, status)

    @staticmethod
    def _headers(report: Report, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out = []
        for name, value in headers:
            if name.lower() == b"x-request-id":
                report.upstream_request_id = value.decode("latin-1")
                out.append((b"x-upstream-request-id", value))
            elif name.lower() == b"openai-processing-ms":
                out.append((b"x-upstream-processing-ms", value))
            else:
                out.append((name, value))
        elapsed = _ms(time.perf_counter() - report.start)
        out.append((b"x-request-id", report.request_id.encode("ascii")))
        out.append((b"openai-processing-ms", str(elapsed).encode("ascii")))
        return out

    @staticmethod
    def _log(scope: Scope, report: Report, status: int) -> None:
        end = time.perf_counter()
        route = route_of(scope)
        REQUESTS.labels(scope["method"], route, str(status)).inc()
        DURATION.labels(route).observe(end - report.start)
        ttft = None
        if report.first_token is not None:
            ttft = report.first_token - report.start
            TTFT.labels(report.model or "").observe(ttft)
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "model": report.model,
            "prompt_tokens": report.prompt_tokens,
            "completion_tokens": report.completion_tokens,
            "ttft_ms": None if ttft is None else _ms(ttft),
            "total_ms": _ms(end - report.start),
            "request_id": report.request_id,
        }
        if report.upstream_request_id is not None:
            fields["upstream_request_id"] = report.upstream_request_id
        log.info("%s %s %s", scope["method"], scope["path"], status, extra={"access": fields})
