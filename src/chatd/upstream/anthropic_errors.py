"""Anthropic Messages API failures -> UpstreamError, and the vendor headers a client uses."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from chatd.backend import UpstreamError

ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
CLIENT_FAULTS = frozenset({400, 404, 413, 422})


def error_from_event(upstream: str, data: dict[str, Any]) -> UpstreamError:
    """An `error` event (or error body) of the Messages API as an UpstreamError."""
    inner = data.get("error")
    error: dict[str, Any] = inner if isinstance(inner, dict) else data
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or kind)
    return error_from_status(upstream, ERROR_STATUSES.get(kind, 500), kind, message, {})


def error_from_body(
    upstream: str, status: int, body: bytes, headers: dict[str, str]
) -> UpstreamError:
    """A non-2xx answer: Anthropic's `{"type":"error","error":{...}}`, an OpenAI-shaped
    error (llama-server's), or anything else."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    kind, message = "api_error", ""
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        kind = str(parsed["error"].get("type") or kind)
        message = str(parsed["error"].get("message") or "")
    elif body:
        message = body[:200].decode(errors="replace").strip()
    return error_from_status(upstream, status, kind, message or f"HTTP {status}", headers)


def error_from_status(
    upstream: str, status: int, kind: str, message: str, headers: dict[str, str]
) -> UpstreamError:
    """The vendor's status and message in chatd's terms (see GATEWAY.md)."""
    named = f"Upstream '{upstream}' answered {status} ({kind}): {message}"
    if status in CLIENT_FAULTS:
        # the client's own fault: its status, the vendor's words
        return UpstreamError(
            upstream,
            f"{message} (from upstream '{upstream}')",
            status=status,
            type="invalid_request_error",
            code="model_not_found" if status == 404 and "model" in message else None,
        )
    if status == 429:
        wait = retry_after(headers)
        relay = {"retry-after": str(max(1, round(wait)))} if wait is not None else {}
        return UpstreamError(
            upstream,
            named,
            status=429,
            type="requests",
            code="rate_limit_exceeded",
            headers=relay,
            retry_after_s=wait,
        )
    if status in (401, 403):  # chatd's own key: never blame the client
        return UpstreamError(
            upstream,
            f"Upstream '{upstream}' rejected chatd's credentials: {message}",
            status=502,
            retryable=False,
        )
    if status in (500, 502, 503, 504, 529):
        wait = retry_after(headers)
        return UpstreamError(
            upstream,
            named,
            status=503 if status == 529 else status,
            code="overloaded" if status == 529 else None,
            headers={"retry-after": str(max(1, round(wait)))} if wait is not None else {},
            retryable=True,
            retry_after_s=wait,
        )
    return UpstreamError(upstream, named, status=502, retryable=False)


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


RATE_HEADERS = {
    f"anthropic-ratelimit-{what}-{part}": f"x-ratelimit-{part}-{what}"
    for what in ("requests", "tokens")
    for part in ("limit", "remaining", "reset")
}


def relay_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The vendor's headers a client uses, in OpenAI's names."""
    out: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name == "request-id":
            out["x-request-id"] = value
        elif name in RATE_HEADERS:
            out[RATE_HEADERS[name]] = value
    return out
