"""An Anthropic-kind upstream: the Messages API (`{base_url}/v1/messages`) as a Backend.

`anthropic_request` and `anthropic_stream` translate; this module only speaks HTTP: one
pooled httpx client per upstream, always streaming, no retries (the routing layer retries
on `UpstreamError.retryable`). `n > 1` is n concurrent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson

from chatd.backend import (
    Capabilities,
    Event,
    GenerationRequest,
    ModelInfo,
    Start,
    UpstreamError,
    UpstreamSpec,
    Usage,
)
from chatd.upstream.anthropic_errors import error_from_body, relay_headers
from chatd.upstream.anthropic_request import API_VERSION, UNSUPPORTED, build_body
from chatd.upstream.anthropic_stream import SSEDecoder, StreamTranslator

CAPABILITIES = Capabilities(
    input_modalities=frozenset({"text", "image"}),
    audio_output=False,
    unsupported=UNSUPPORTED,
)
MODEL_PAGES = 20  # GET /v1/models pages read at start, at most


def api_root(base_url: str) -> str:
    """`https://api.anthropic.com` whether the config says it with `/v1` or without."""
    return base_url.rstrip("/").removesuffix("/v1")


class AnthropicBackend:
    """Models of one `kind = "anthropic"` upstream, answered through its Messages API."""

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.name = spec.name
        root = api_root(spec.base_url)
        self.messages_url = root + "/v1/messages"
        self.models_url = root + "/v1/models"
        self.models = list(spec.models or ())
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        headers.update(spec.headers)
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_s, connect=spec.connect_timeout_s),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    async def start(self) -> None:
        """Ask the upstream for its models when the config lists none."""
        if self.spec.models is not None:
            return
        models: list[str] = []
        params: dict[str, Any] = {"limit": 1000}
        for _ in range(MODEL_PAGES):
            try:
                response = await self.client.get(self.models_url, params=params)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from exc
            if response.status_code != 200:
                raise error_from_body(
                    self.name, response.status_code, response.content, dict(response.headers)
                )
            page = response.json()
            models += [entry["id"] for entry in page.get("data", ())]
            if not page.get("has_more") or not page.get("last_id"):
                break
            params["after_id"] = page["last_id"]
        self.models = models

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(f"{self.name}/{model}", self.name) for model in self.models]

    def capabilities(self, model: str) -> Capabilities:
        return CAPABILITIES

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        model = request.model.removeprefix(self.name + "/")
        payload = orjson.dumps(build_body(request, model, request.model))
        events = (
            self._stream(payload, 0, model)
            if request.n == 1
            else self._many(payload, request.n, model)
        )
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def close(self) -> None:
        await self.client.aclose()

    async def _stream(self, payload: bytes, index: int, model: str) -> AsyncGenerator[Event, None]:
        """One upstream request: Start, the answer's events, Usage last."""
        translator = StreamTranslator(self.name, index, model)
        try:
            async with self.client.stream("POST", self.messages_url, content=payload) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    headers = dict(response.headers)
                    raise error_from_body(self.name, response.status_code, body, headers)
                relayed = relay_headers(response.headers.items())
                decoder = SSEDecoder()
                async for line in response.aiter_lines():
                    item = decoder.feed(line)
                    # read on to the body's end after message_stop (the translator takes
                    # only late usage): the connection goes back to the pool only when the
                    # response was read whole
                    if item is None:
                        continue
                    for event in self._translate(translator, *item):
                        if isinstance(event, Start):
                            event.headers = relayed
                        yield event
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if not translator.stopped:
            raise UpstreamError(
                self.name,
                f"Upstream '{self.name}' ended its stream before message_stop.",
                retryable=not translator.started,
            )
        yield translator.usage()

    async def _many(self, payload: bytes, n: int, model: str) -> AsyncGenerator[Event, None]:
        """n concurrent requests as one answer of n choices: Start once every one started
        (so a refusal is still an HTTP error), usage summed."""
        queue: asyncio.Queue[tuple[int, Event | Exception | None]] = asyncio.Queue(64 * n)
        streams = [self._stream(payload, i, model) for i in range(n)]

        async def pump(i: int) -> None:
            try:
                async for event in streams[i]:
                    await queue.put((i, event))
                await queue.put((i, None))
            except Exception as exc:
                await queue.put((i, exc))

        tasks = [asyncio.create_task(pump(i)) for i in range(n)]
        starts: dict[int, Start] = {}
        held: list[Event] = []
        usages: list[Usage] = []
        running = n
        try:
            while running:
                i, item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item is None:
                    running -= 1
                elif isinstance(item, Start):
                    starts[i] = item
                    if len(starts) == n:
                        yield starts[0]
                        for event in held:
                            yield event
                        held.clear()
                elif isinstance(item, Usage):
                    usages.append(item)
                elif len(starts) < n:
                    held.append(item)
                else:
                    yield item
            # the n requests send one prompt, so each one's prompt count is the largest
            # reported: llama-server can omit a stream's message_start, and its counts
            yield Usage(
                prompt_tokens=n * max((u.prompt_tokens for u in usages), default=0),
                completion_tokens=sum(u.completion_tokens for u in usages),
                cached_tokens=sum(u.cached_tokens for u in usages),
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stream in streams:
                await stream.aclose()

    def _translate(self, translator: StreamTranslator, kind: str, data: str) -> list[Event]:
        try:
            return translator.feed_raw(kind, data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamError(
                self.name,
                f"Upstream '{self.name}' sent a {kind} event chatd could not read.",
                retryable=not translator.started,
            ) from exc

    def _transport_error(self, exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(
                self.name, f"Upstream '{self.name}' timed out ({type(exc).__name__}).", status=504
            )
        return UpstreamError(
            self.name,
            f"Upstream '{self.name}' could not be reached or dropped the connection "
            f"({type(exc).__name__}).",
            status=502,
            retryable=True,
        )
