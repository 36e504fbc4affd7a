"""Per-key limits at the HTTP edge: admission, OpenAI's rate-limit headers, token metering."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import orjson
from prometheus_client import Counter
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.api.errors import APIError
from chatd.backend import (
    Event,
    GenerationRequest,
    RefusalDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from chatd.keys import Key
from chatd.ratelimits import Limiter, Verdict, Window
from chatd.telemetry import REGISTRY

LIMITED_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v4/beta/chat/completions",
        "/v1/messages",  # the Anthropic Messages API
        "/v1/responses",
    }
)
HEADER_NAMES = frozenset(
    f"x-ratelimit-{what}-{kind}".encode()
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
)
BYTES_PER_TOKEN = 4  # a prompt's size in tokens, guessed when the backend never said

TOKENS = Counter(
    "chatd_key_tokens",
    "Tokens used, by key name and type (prompt or completion)",
    ["key", "type"],
    registry=REGISTRY,
)
REFUSED = Counter(
    "chatd_key_rate_limited",
    "Requests refused with 429 rate_limit_exceeded, by key name and limit",
    ["key", "limit"],
    registry=REGISTRY,
)


def duration(ms: int) -> str:
    """A wait as OpenAI's x-ratelimit-reset-* headers write it (Go style): 20ms, 1s, 6m0s."""
    if ms < 1000:
        return f"{ms}ms" if ms > 0 else "0s"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds = str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _window_headers(kind: str, window: Window) -> list[tuple[bytes, bytes]]:
    return [
        (f"x-ratelimit-limit-{kind}".encode(), str(window.limit).encode()),
        (f"x-ratelimit-remaining-{kind}".encode(), str(window.remaining).encode()),
        (f"x-ratelimit-reset-{kind}".encode(), duration(window.reset_ms).encode()),
    ]


def rate_limit_headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if verdict.requests is not None:
        headers += _window_headers("requests", verdict.requests)
    if verdict.tokens is not None:
        headers += _window_headers("tokens", verdict.tokens)
    return headers


def rate_limit_exceeded(key: Key, verdict: Verdict) -> APIError:
    """OpenAI's 429: type `requests` or `tokens`, code `rate_limit_exceeded`, Retry-After."""
    if verdict.exceeded == "tokens":
        assert verdict.tokens is not None
        window, what = verdict.tokens, "tokens per min (TPM)"
        detail = f"Limit {window.limit}, Used {window.used}"
    else:
        assert verdict.requests is not None
        window, what = verdict.requests, "requests per min (RPM)"
        detail = f"Limit {window.limit}, Used {window.limit - window.remaining}, Requested 1"
    wait = max(verdict.retry_after_ms, 1)
    message = (
        f"Rate limit reached for key '{key.name}' on {what}: {detail}. "
        f"Please try again in {duration(wait)}."
    )
    headers = {"retry-after": str(math.ceil(wait / 1000)), "retry-after-ms": str(wait)}
    headers.update((k.decode(), v.decode()) for k, v in rate_limit_headers(verdict))
    return APIError(
        message,
        status=429,
        type=verdict.exceeded or "requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


class LimitsMiddleware:
    """Admits each chat request of a key with rpm/tpm, or answers 429; adds the headers.

    Runs after AuthMiddleware (which puts the caller's `Key` in the scope's state). Every
    request to a chat endpoint counts, whatever its answer, as OpenAI counts them; the
    headers of every such response are chatd's (they replace an upstream's).
    """

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key: Key | None = scope.get("state", {}).get("key")
        if (
            key is None
            or not key.limited
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in LIMITED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        verdict = await self.limiter.check(key)
        if not verdict.allowed:
            REFUSED.labels(key.name, verdict.exceeded).inc()
            await rate_limit_exceeded(key, verdict).response()(scope, receive, send)
            return
        headers = rate_limit_headers(verdict)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and headers:
                kept = [h for h in message.get("headers", []) if h[0].lower() not in HEADER_NAMES]
                message["headers"] = kept + headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def metered(
    request: Request, generation: GenerationRequest, events: AsyncIterator[Event]
) -> AsyncIterator[Event]:
    """`events` (of `generation`), passed on; the answer's usage is debited from the caller's
    key when they end or, if they end early (a client that left), what was generated."""
    key: Key = request.state.key
    usage: Usage | None = None
    started = False
    generated = 0
    try:
        async for event in events:
            if isinstance(event, (TextDelta, RefusalDelta, ToolCallDelta)):
                generated += 1
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Start):
                started = True
            yield event
    finally:
        try:
            if usage is not None:
                await _spend(request, key, usage.prompt_tokens, usage.completion_tokens)
            elif started:
                # the backend never reported usage: about one token per delta, and the
                # prompt guessed from its size
                prompt = len(orjson.dumps(generation.messages)) // BYTES_PER_TOKEN
                await _spend(request, key, prompt, generated)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()


async def spend(request: Request, prompt: int, completion: int) -> None:
    """Debit an answer's tokens from the caller's key (an answer that never was `Event`s)."""
    await _spend(request, request.state.key, prompt, completion)


async def _spend(request: Request, key: Key, prompt: int, completion: int) -> None:
    TOKENS.labels(key.name, "prompt").inc(prompt)
    TOKENS.labels(key.name, "completion").inc(completion)
    limiter: Limiter = request.app.state.limiter
    await limiter.spend(key, prompt + completion)
