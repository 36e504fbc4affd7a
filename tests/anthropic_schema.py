"""The Messages API's documented shapes, strict: every required field, no field undocumented.

Written from Anthropic's API reference ("Messages", "Streaming Messages", "Errors",
"Count tokens"); `tests/test_messages.py` checks them against the hand-recorded streams
in fixtures/anthropic/ (so the shapes accept what the real API sends) and validates
every answer, event and error chatd sends on /v1/messages against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]


class Usage(Strict):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)
    cache_creation: dict[str, int] | None = None
    server_tool_use: dict[str, int] | None = None
    service_tier: Literal["standard", "priority", "batch"] | None = None


class TextBlock(Strict):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class ToolUseBlock(Strict):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ThinkingBlock(Strict):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


ContentBlock = Annotated[TextBlock | ToolUseBlock | ThinkingBlock, Field(discriminator="type")]


class Message(Strict):
    id: str = Field(pattern=r"^msg_")
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


class MessageStart(Strict):
    type: Literal["message_start"]
    message: Message


class ContentBlockStart(Strict):
    type: Literal["content_block_start"]
    index: int = Field(ge=0)
    content_block: ContentBlock


class TextDelta(Strict):
    type: Literal["text_delta"]
    text: str


class InputJsonDelta(Strict):
    type: Literal["input_json_delta"]
    partial_json: str


class ThinkingDelta(Strict):
    type: Literal["thinking_delta"]
    thinking: str


class SignatureDelta(Strict):
    type: Literal["signature_delta"]
    signature: str


Delta = Annotated[
    TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta, Field(discriminator="type")
]


class ContentBlockDelta(Strict):
    type: Literal["content_block_delta"]
    index: int = Field(ge=0)
    delta: Delta


class ContentBlockStop(Strict):
    type: Literal["content_block_stop"]
    index: int = Field(ge=0)


class StopDelta(Strict):
    stop_reason: StopReason | None
    stop_sequence: str | None


class DeltaUsage(Strict):
    output_tokens: int = Field(ge=0)
    input_tokens: int | None = Field(default=None, ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)
    server_tool_use: dict[str, int] | None = None


class MessageDelta(Strict):
    type: Literal["message_delta"]
    delta: StopDelta
    usage: DeltaUsage


class MessageStop(Strict):
    type: Literal["message_stop"]


class Ping(Strict):
    type: Literal["ping"]


ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
]


class ErrorDetail(Strict):
    type: ErrorType
    message: str = Field(min_length=1)


class Error(Strict):
    type: Literal["error"]
    error: ErrorDetail
    request_id: str | None = None


class TokenCount(Strict):
    input_tokens: int = Field(ge=0)


StreamEvent = Annotated[
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | Error,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter(StreamEvent)
STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def message(body: dict[str, Any]) -> Message:
    return Message.model_validate(body)


def event(kind: str, data: dict[str, Any]) -> Any:
    """One stream event: its data valid, and the SSE event name its `type`."""
    parsed = _EVENT.validate_python(data)
    assert kind == data["type"], f"event {kind!r} carries type {data['type']!r}"
    return parsed


def error(body: dict[str, Any], status: int) -> Error:
    """An error body, and the status Anthropic gives its type (invalid_request_error: "other
    4XX status codes" too)."""
    parsed = Error.model_validate(body)
    kind = parsed.error.type
    if kind == "invalid_request_error":
        assert 400 <= status < 500, (kind, status)
    else:
        assert STATUSES.get(kind, status) == status, (kind, status)
    return parsed
