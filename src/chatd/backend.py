"""The one contract between the API layer and whatever generates text.

`Backend.generate(request)` yields `Event`s; the API layer assembles them into a
ChatCompletion or encodes them as SSE chunks. Nothing here knows HTTP or llama.cpp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    response_format: dict[str, Any] | None = (
        None  # {"type": "text"|"json_object"|"json_schema", ...}
    )
    prediction: str | None = None  # predicted output text
    prompt_cache_key: str | None = None


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
class TextDelta:
    """New content text of choice `index` (with the logprobs of the tokens it came from)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


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


@dataclass(slots=True)
class Usage:
    """Sent once, last, after every choice finished."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


Event = TextDelta | ToolCallDelta | Finish | Usage


class BackendError(Exception):
    """A request the backend refuses; the API layer turns it into a 400 error object."""

    status = 400

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


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
    """The wait queue is full: the API answers 429 with Retry-After."""

    status = 429


class Backend(Protocol):
    """Anything that turns a GenerationRequest into events."""

    @property
    def model_ids(self) -> list[str]:
        """The ids (name and aliases) this backend answers to."""
        ...

    @property
    def system_fingerprint(self) -> str: ...

    @property
    def owned_by(self) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Yield events; aclose() cancels. Raises BackendError before the first event."""
        ...

    async def close(self) -> None: ...
