"""The OpenAI kind: any Chat Completions API (OpenAI, vLLM, SGLang, Ollama, llama.cpp, chatd).

The client's body is relayed as sent (only `model` rewritten, `store` kept back unless
the upstream forwards it, usage always asked for in streams) over one pooled keep-alive
aiohttp session per upstream (bench/upstream_clients.py: the least added latency of
httpx, httpcore and aiohttp). The answer comes back as events, chunk by chunk as it
arrives, so stored completions, usage accounting and the stream rules hold for every
model. The upstream judges what it can do: `capabilities()` allows everything.
`relay_responses` passes the Responses API through to the vendor's own `/responses`
as bytes (chatd.api.oairesponses.relay), with the same session and error mapping.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from chatd.backend import (
    Capabilities,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    RefusalDelta,
    Relayed,
    Start,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    UpstreamError,
    UpstreamSpec,
    Usage,
)

ANYTHING = Capabilities(
    input_modalities=frozenset({"text", "image", "audio", "file"}),
    audio_output=True,
    reasoning_efforts=None,
    unsupported=frozenset(),
)
RELAYED_HEADERS = ("x-request-id", "openai-processing-ms", "openai-version", "retry-after")
CLIENT_FAULTS = frozenset({400, 404, 409, 413, 422})


class OpenAIBackend:
    """One `kind = "openai"` upstream."""

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.prefix = spec.name + "/"
        self.models = list(spec.models or [])
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.responses_url = spec.base_url.rstrip("/") + "/responses"
        self.headers = {"content-type": "application/json", **spec.headers}
        if spec.api_key:
            self.headers["authorization"] = f"Bearer {spec.api_key}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # needs a running loop: made on first use or in start()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self.spec.connect_timeout_s,
                    sock_read=self.spec.timeout_s,
                ),
                skip_auto_headers=("user-agent",),
                read_bufsize=2**20,  # the longest SSE line readline() accepts is twice this
                auto_decompress=True,
            )
        return self._session

    async def start(self) -> None:
        """Lists the upstream's models (GET {base_url}/models) when the config did not."""
        if self.spec.models is not None:
            return
        url = self.spec.base_url.rstrip("/") + "/models"
        try:
            async with self.session.get(url, headers=self.headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise self._error(response.status, body, response.headers)
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None
        self.models = [entry["id"] for entry in orjson.loads(body).get("data", [])]

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.prefix + model, self.spec.name) for model in self.models]

    def capabilities(self, model: str) -> Capabilities:
        return ANYTHING

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def body(self, request: GenerationRequest, stream: bool) -> bytes:
        body = dict(request.raw) if request.raw is not None else _body_of(request)
        body["model"] = request.model.removeprefix(self.prefix)
        if not self.spec.forward_store:
            body.pop("store", None)
            body.pop("metadata", None)  # the API refuses metadata without store
        if stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        stream = bool(request.raw.get("stream")) if request.raw is not None else False
        timing = request.timing
        body = self.body(request, stream)
        waited = time.perf_counter()
        response = await self._post(body)
        timing.upstream_s += time.perf_counter() - waited
        try:
            if response.status != 200:
                raise self._error(response.status, await response.read(), response.headers)
            if stream:
                async for event in self._stream(request, response):
                    yield event
                return
            waited = time.perf_counter()
            raw = await self._read(response)
            timing.upstream_s += time.perf_counter() - waited
            answer = self._json(raw)
            if not isinstance(answer, dict) or "choices" not in answer:
                raise UpstreamError(self.spec.name, self._named("sent a body with no choices"))
            yield self._start(request, answer, response.headers)
            for event in completion_events(answer):
                yield event
        finally:
            response.close()  # an unfinished answer closes the connection: the upstream stops

    async def relay_responses(
        self, method: str, path: str = "", *, query: str = "", body: bytes | None = None
    ) -> Relayed:
        """The Responses API relayed to the vendor's own; errors mapped as for chat."""
        url = self.responses_url + path + ("?" + query if query else "")
        try:
            response = await self.session.request(method, url, data=body, headers=self.headers)
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None
        if not 200 <= response.status < 300:
            try:
                raise self._error(response.status, await self._read(response), response.headers)
            finally:
                response.close()
        return Relayed(
            response.status,
            relayed_headers(response.headers),
            response.headers.get("content-type", "application/json"),
            self._bytes(response),
        )

    async def _bytes(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body as it arrives; closed early, the connection closes and the vendor stops."""
        try:
            async for data in response.content.iter_any():
                yield data
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None
        finally:
            response.close()

    async def _post(self, body: bytes) -> aiohttp.ClientResponse:
        try:
            return await self.session.post(self.url, data=body, headers=self.headers)
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        try:
            return await response.read()
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None
        except TimeoutError:
            raise self._timeout() from None

    async def _stream(
        self, request: GenerationRequest, response: aiohttp.ClientResponse
    ) -> AsyncIterator[Event]:
        timing = request.timing
        started = False
        finished: set[int] = set()
        usage: Usage | None = None
        content = response.content
        while True:
            waited = time.perf_counter()
            try:
                line = await content.readline()
            except aiohttp.ClientError as exc:
                raise self._connection_error(exc) from None
            except TimeoutError:
                raise self._timeout() from None
            timing.upstream_s += time.perf_counter() - waited
            if not line:
                if started and usage is not None and len(finished) == request.n:
                    break  # complete, only the [DONE] line missing
                raise UpstreamError(self.spec.name, self._named("ended its stream early"))
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = self._json(data)
            if "error" in chunk:
                raise self._error(502, data, response.headers)
            if not started:
                started = True
                yield self._start(request, chunk, response.headers)
            if chunk.get("usage"):
                usage = usage_of(chunk["usage"])
            for choice in chunk.get("choices") or ():
                for event in delta_events(choice):
                    if isinstance(event, Finish):
                        finished.add(event.index)
                    yield event
        if not started:
            raise UpstreamError(self.spec.name, self._named("sent an empty stream"))
        # a server that ignores include_usage still ends a complete answer
        yield usage or Usage(0, 0)

    def _start(
        self, request: GenerationRequest, answer: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Start:
        return Start(
            model=answer.get("model") or request.model.removeprefix(self.prefix),
            system_fingerprint=answer.get("system_fingerprint"),
            service_tier=answer.get("service_tier"),
            headers=relayed_headers(headers),
        )

    def _json(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                self.spec.name, self._named("sent a body that is not JSON")
            ) from None

    def _named(self, what: str) -> str:
        return f"Upstream `{self.spec.name}` {what}."

    def _connection_error(self, exc: Exception) -> UpstreamError:
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return self._timeout()
        reason = type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = "connection refused" if exc.os_error else reason
        elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            reason = "connection closed"
        return UpstreamError(self.spec.name, self._named(f"could not be reached ({reason})"))

    def _timeout(self) -> UpstreamError:
        return UpstreamError(
            self.spec.name,
            self._named(f"did not answer within {self.spec.timeout_s:g} s"),
            status=504,
            code="upstream_timeout",
        )

    def _error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """The vendor's error answer, as chatd answers it (the status mapping of GATEWAY.md)."""
        name = self.spec.name
        if status in (401, 403):  # chatd's own key: the vendor's text may quote part of it
            return UpstreamError(
                name,
                self._named(f"rejected chatd's API key (HTTP {status}); check its api_key_env"),
                code="upstream_auth_failed",
                retryable=False,
            )
        error = vendor_error(body)
        message = error.get("message") or f"HTTP {status}"
        relay = relayed_headers(headers, error=True)
        if status == 429:
            return UpstreamError(
                name,
                message,
                status=429,
                type=error.get("type") or "requests",
                code=error.get("code") or "rate_limit_exceeded",
                headers=relay,
                retry_after_s=retry_after(headers),
            )
        if status in CLIENT_FAULTS:
            return UpstreamError(
                name,
                message,
                status=status,
                type=error.get("type") or "invalid_request_error",
                code=error.get("code"),
                param=error.get("param"),
                retryable=False,
            )
        mapped = status if status in (500, 502, 503, 504) else 503 if status == 529 else 502
        return UpstreamError(
            name,
            self._named(f"failed (HTTP {status}): {message}"),
            status=mapped,
            headers={k: v for k, v in relay.items() if k == "retry-after"},
            retryable=status in (500, 502, 503, 504, 529),
            retry_after_s=retry_after(headers),
        )


def _body_of(request: GenerationRequest) -> dict[str, Any]:
    """A body for a request that did not come from a client's JSON (no `raw`)."""
    body: dict[str, Any] = {"messages": request.messages, "n": request.n, **request.passthrough}
    if request.max_tokens is not None:
        body["max_completion_tokens"] = request.max_tokens
    if request.stop:
        body["stop"] = request.stop
    sampling = request.sampling
    body.update(temperature=sampling.temperature, top_p=sampling.top_p)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if request.logprobs:
        body.update(logprobs=True, top_logprobs=request.top_logprobs)
    return body


def relayed_headers(headers: Mapping[str, str], error: bool = False) -> dict[str, str]:
    """The vendor's response headers a client uses (Retry-After only on an error)."""
    relay = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower in RELAYED_HEADERS or lower.startswith("x-ratelimit-"):
            relay[lower] = value
    if not error:
        relay.pop("retry-after", None)
    return relay


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds; dates ignored)."""
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def vendor_error(body: bytes) -> dict[str, Any]:
    """The error object of a vendor's body, whatever its shape ({} when there is none)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return {"message": text[:500]} if text else {}
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            return {k: error[k] for k in ("message", "type", "param", "code") if k in error}
        if isinstance(error, str):
            return {"message": error}
    return {}


def logprobs_of(choice: Mapping[str, Any]) -> list[TokenLogprob] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [
        TokenLogprob(
            e["token"],
            e["logprob"],
            e.get("bytes"),
            [
                TopLogprob(t["token"], t["logprob"], t.get("bytes"))
                for t in e.get("top_logprobs", [])
            ],
        )
        for e in content
    ]


def usage_of(usage: Mapping[str, Any]) -> Usage:
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        accepted_prediction_tokens=completion.get("accepted_prediction_tokens") or 0,
        rejected_prediction_tokens=completion.get("rejected_prediction_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _call_events(index: int, calls: list[Any], logprobs: list[TokenLogprob] | None) -> list[Event]:
    events: list[Event] = []
    for position, call in enumerate(calls):
        kind = call.get("type")
        part = call.get("custom") if kind == "custom" else call.get("function")
        part = part or {}
        call_id = call.get("id")
        events.append(
            ToolCallDelta(
                index,
                call.get("index", position),
                part.get("input" if kind == "custom" else "arguments") or "",
                id=call_id,
                kind=(kind or "function") if call_id else None,
                name=part.get("name"),
                logprobs=logprobs if position == 0 else None,
            )
        )
    return events


def _legacy_call(index: int, call: Mapping[str, Any]) -> ToolCallDelta:
    name = call.get("name")
    return ToolCallDelta(
        index,
        0,
        call.get("arguments") or "",
        id="call_function" if name else None,
        kind="function" if name else None,
        name=name,
    )


def delta_events(choice: Mapping[str, Any]) -> list[Event]:
    """The events of one choice of a streamed chunk."""
    index = choice.get("index", 0)
    delta = choice.get("delta") or {}
    logprobs = logprobs_of(choice)
    events: list[Event] = []
    if delta.get("refusal"):
        events.append(RefusalDelta(index, delta["refusal"]))
    if delta.get("tool_calls"):
        events.extend(_call_events(index, delta["tool_calls"], logprobs))
        logprobs = None
    if delta.get("function_call"):
        events.append(_legacy_call(index, delta["function_call"]))
    if delta.get("content") or logprobs:
        events.append(TextDelta(index, delta.get("content") or "", logprobs))
    if choice.get("finish_reason"):
        events.append(Finish(index, choice["finish_reason"]))
    return events


def completion_events(answer: Mapping[str, Any]) -> list[Event]:
    """The events of a whole `chat.completion`, Usage last."""
    events: list[Event] = []
    for choice in answer["choices"]:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        logprobs = logprobs_of(choice)
        if message.get("refusal"):
            events.append(RefusalDelta(index, message["refusal"]))
        if message.get("content") or (logprobs and not message.get("tool_calls")):
            events.append(TextDelta(index, message.get("content") or "", logprobs))
            logprobs = None
        if message.get("tool_calls"):
            events.extend(_call_events(index, message["tool_calls"], logprobs))
        if message.get("function_call"):
            events.append(_legacy_call(index, message["function_call"]))
        events.append(Finish(index, choice.get("finish_reason") or "stop"))
    events.append(usage_of(answer.get("usage") or {}))
    return events
