"""The one contract between the API layer and whatever generates text.

`Backend.generate(request)` yields `Event`s; the API layer assembles them into a
ChatCompletion or encodes them as SSE chunks. Nothing here knows HTTP or llama.cpp.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


@dataclass(slots=True)
class SamplingParams:
    """Every knob of the sampler; defaults are the OpenAI API's."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off (extension)
    min_p: float = 0.0  # extension
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0  # extension
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None


@dataclass(slots=True)
class ToolSpec:
    """A declared tool, already validated. kind is "function" or "custom"."""

    kind: Literal["function", "custom"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of a function's arguments
    strict: bool = False
    grammar: dict[str, Any] | None = None  # custom tool format: {"type": "text"} or grammar


@dataclass(slots=True)
class ToolChoice:
    """Resolved tool_choice. mode: none | auto | required; names: the tools allowed."""

    mode: Literal["none", "auto", "required"] = "auto"
    names: list[str] | None = None  # None = every declared tool


@dataclass(slots=True)
class ResponseFormat:
    """What the content must be: free text, any JSON object, or JSON matching `schema`."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None  # json_schema only; None = any JSON
    name: str = "response"
    description: str | None = None
    strict: bool = False


@dataclass(slots=True)
class Timing:
    """One request's clock: chatd's own overhead is the time not spent waiting upstream."""

    started: float = field(default_factory=time.perf_counter)
    upstream_s: float = 0.0  # added to by adapters while they wait on another vendor

    def overhead_s(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.upstream_s)


@dataclass(slots=True)
class GenerationRequest:
    """A validated chat request in the form a backend needs."""

    model: str
    messages: list[dict[str, Any]]  # OpenAI message dicts, validated
    n: int = 1
    max_tokens: int | None = None  # None = until the context is full
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False  # extension
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    legacy_functions: bool = False  # request used functions/function_call
    response_format: ResponseFormat | None = None
    prediction: str | None = None  # predicted output text
    prompt_cache_key: str | None = None
    # fields a remote API may use and the local engine does not (user, metadata,
    # service_tier, reasoning_effort, audio, ...), as the client sent them
    passthrough: dict[str, Any] = field(default_factory=dict)
    # the client's whole parsed body, for adapters that relay it as sent (OpenAI kind)
    raw: dict[str, Any] | None = None
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one model can do; the API layer checks a request against it after routing."""

    input_modalities: frozenset[str] = frozenset({"text"})  # and "image", "audio", "file"
    audio_output: bool = False
    reasoning_efforts: frozenset[str] | None = frozenset({"none"})  # None = any
    # request fields this model refuses when they are set to anything but their default
    unsupported: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One entry of `GET /v1/models`."""

    id: str
    owned_by: str
    created: int | None = None  # None = when the server started


@dataclass(slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


@dataclass(slots=True)
class Start:
    """Opens every event stream: what the envelope of the answer says."""

    model: str
    system_fingerprint: str | None = None
    service_tier: str | None = "default"
    headers: dict[str, str] = field(default_factory=dict)  # for the client (x-request-id, ...)
    prompt_tokens: int | None = None  # when known before the answer (the Messages API says it)


@dataclass(slots=True)
class TextDelta:
    """New content text of choice `index` (with the logprobs of the tokens it came from)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class RefusalDelta:
    """New refusal text of choice `index`: the model declined to answer."""

    index: int
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """Part of tool call `call_index` of choice `index`.

    The first delta of a call carries id, kind and name; later ones only arguments
    (for a custom tool, `arguments` is a fragment of its raw input).
    """

    index: int
    call_index: int
    arguments: str = ""
    id: str | None = None
    kind: Literal["function", "custom"] | None = None
    name: str | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class Finish:
    index: int
    reason: FinishReason
    stop_sequence: str | None = None  # the stop string that ended a "stop", when known


@dataclass(slots=True)
class Usage:
    """Sent once, last, after every choice finished."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    reasoning_tokens: int = 0


Event = Start | TextDelta | RefusalDelta | ToolCallDelta | Finish | Usage


class BackendError(Exception):
    """A request a backend refuses or cannot serve, in the terms of the API's error object."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.type = type
        self.headers = headers or {}


class ContextLengthExceeded(BackendError):
    def __init__(
        self, n_ctx: int, prompt_tokens: int, max_tokens: int | None, *, at_least: bool = False
    ) -> None:
        """`at_least`: prompt_tokens is a lower bound, the prompt was not tokenized."""
        q = "at least " if at_least else ""
        if max_tokens is None:
            message = (
                f"This model's maximum context length is {n_ctx} tokens. However, your "
                f"messages resulted in {q}{prompt_tokens} tokens. Please reduce the length "
                "of the messages."
            )
        else:
            message = (
                f"This model's maximum context length is {n_ctx} tokens. However, you "
                f"requested {q}{prompt_tokens + max_tokens} tokens ({q}{prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of "
                "the messages or completion."
            )
        super().__init__(message, "messages", "context_length_exceeded")


class BackendOverloaded(BackendError):
    """The backend's wait queue is full: 429, try again shortly."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(
            message,
            code="rate_limit_exceeded",
            status=429,
            type="requests",
            headers={"retry-after": str(retry_after_s)},
        )


class GenerationFailed(BackendError):
    """The backend failed after it had started answering."""

    def __init__(self, message: str = "The model failed while generating the answer.") -> None:
        super().__init__(message, status=500, type="server_error")


class Backend(Protocol):
    """Anything that turns a GenerationRequest into events.

    `generate` yields `Start` first, then the answer's events, `Usage` last; it raises
    BackendError before `Start` for a request it refuses, and may raise any exception
    later (the API layer then ends the answer as failed). `aclose()` cancels.
    """

    def list_models(self) -> list[ModelInfo]:
        """The models (ids and aliases) this backend answers to."""
        ...

    def capabilities(self, model: str) -> Capabilities: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...


@runtime_checkable
class SupportsStats(Protocol):
    """A backend with gauges and counters for /metrics (names ending in _total are counters)."""

    def stats(self) -> dict[str, float]: ...


@runtime_checkable
class SupportsTokenCount(Protocol):
    """A backend that can count a request's prompt tokens with the model's own tokenizer."""

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The prompt's tokens as `generate` would build it (tools included), unbounded."""
        ...


@dataclass(slots=True)
class Relayed:
    """An upstream's answer passed on as it comes: its status, the headers a client uses,
    its content type and its body's bytes (closing `body` closes the upstream request)."""

    status: int
    headers: dict[str, str]
    content_type: str
    body: AsyncIterator[bytes]


@runtime_checkable
class SupportsResponsesRelay(Protocol):
    """An upstream adapter that relays the Responses API to the vendor's own `/responses`."""

    async def relay_responses(
        self, method: str, path: str = "", *, query: str = "", body: bytes | None = None
    ) -> Relayed:
        """`method {base_url}/responses{path}?{query}`; UpstreamError (before any byte) for
        a vendor that cannot be reached or answers an error."""
        ...


@runtime_checkable
class RelaysResponses(Protocol):
    """A backend (the gateway) that knows which models and upstreams relay the Responses API."""

    def responses_relay(self, model: str) -> tuple[str, str, SupportsResponsesRelay] | None:
        """(upstream name, the upstream's model id, its adapter) when `model` is relayed."""
        ...

    def relay_upstream(self, name: str) -> SupportsResponsesRelay | None:
        """The adapter of the upstream `name`, if it relays."""
        ...


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


class UpstreamError(BackendError):
    """Another vendor's API failed or pushed back; the message names the upstream.

    `retryable`: another try (after `retry_after_s`, if the vendor said) may succeed.
    """

    def __init__(
        self,
        upstream: str,
        message: str,
        *,
        status: int = 502,
        type: str = "upstream_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, param, code, status=status, type=type, headers=headers)
        self.upstream = upstream
        self.retryable = status in RETRYABLE_STATUSES if retryable is None else retryable
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class UpstreamSpec:
    """One `[[upstreams]]` entry of the config: another vendor's API, as an adapter needs it."""

    name: str  # the vendor prefix clients write: "openai/gpt-4o"
    kind: Literal["openai", "anthropic"]
    base_url: str
    api_key: str | None = None  # read from api_key_env at start; never logged or returned
    models: list[str] | None = None  # None = ask the upstream (GET {base_url}/models)
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retries: int = 2
    headers: dict[str, str] = field(default_factory=dict)
    forward_store: bool = False
    circuit_failures: int = 5  # failures in a row that open the circuit breaker; 0 = never
    circuit_cooldown_s: float = 30.0  # how long an open circuit skips the upstream
    relay_responses: bool = True  # kind openai: POST /v1/responses goes to its /responses
