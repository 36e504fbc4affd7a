"""The CreateResponse request: every field validated, honoured or refused by name.

A valid request becomes a Chat Completions body (`chat_body`) that chatd's own
Chat Completions parser turns into the `GenerationRequest` every backend takes, so
the two APIs share one set of checks, one grammar for `text.format` and tools, and
one gateway path. Errors raised on that body are renamed to the Responses fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatd.api.bounds import check_json_shape
from chatd.api.errors import APIError
from chatd.api.metadata import validate_metadata
from chatd.api.oairesponses.items import parse_input
from chatd.api.schemas import JSON_ERROR, ChatRequest, parse_chat_request
from chatd.api.validation import (
    Obj,
    invalid_type,
    missing,
    unknown_parameter,
    unsupported_parameter,
    unsupported_value,
)

INCLUDES = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
LOGPROBS = "message.output_text.logprobs"
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
TRUNCATIONS = ("auto", "disabled")
VERBOSITIES = ("low", "medium", "high")
FORMATS = ("text", "json_object", "json_schema")
CHOICE_MODES = ("none", "auto", "required")
MAX_TOOLS = 128
# fields of the spec chatd does not implement: refused by name when set
REFUSED = ("prompt", "conversation", "context_management")
KNOWN = (
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "store",
    "background",
    "stream",
    "stream_options",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "include",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "truncation",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "service_tier",
    "reasoning",
    "moderation",
    *REFUSED,
)
# copied into the Chat Completions body as sent
SAME_FIELDS = (
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "moderation",
)


@dataclass(slots=True, kw_only=True)
class ResponsesRequest:
    """A valid CreateResponse body; `input` in the stored item form."""

    raw: dict[str, Any]
    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    background: bool = False
    stream: bool = False
    max_output_tokens: int | None = None
    truncation: str = "disabled"
    metadata: dict[str, str] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in self.include

    def chat_body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The Chat Completions body that asks the same of a backend."""
        raw = self.raw
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.stream or self.background:  # an upstream then streams to chatd too
            body["stream"] = True
        for key in SAME_FIELDS:
            if raw.get(key) is not None:
                body[key] = raw[key]
        if self.max_output_tokens is not None:
            body["max_completion_tokens"] = self.max_output_tokens
        if raw.get("service_tier") not in (None, "ultrafast"):
            body["service_tier"] = raw["service_tier"]
        if self.logprobs:
            body["logprobs"] = True
            if raw.get("top_logprobs") is not None:
                body["top_logprobs"] = raw["top_logprobs"]
        tools = raw.get("tools") or []
        if tools:
            body["tools"] = [_chat_tool(tool) for tool in tools]
            if raw.get("parallel_tool_calls") is not None:
                body["parallel_tool_calls"] = raw["parallel_tool_calls"]
        choice = raw.get("tool_choice")
        if choice is not None and (tools or choice not in ("auto", "none")):
            body["tool_choice"] = _chat_tool_choice(choice)
        text = raw.get("text") or {}
        fmt = text.get("format")
        if fmt is not None and fmt["type"] != "text":
            body["response_format"] = _chat_format(fmt)
        if text.get("verbosity") is not None:
            body["verbosity"] = text["verbosity"]
        effort = (raw.get("reasoning") or {}).get("effort")
        if effort is not None:
            body["reasoning_effort"] = effort
        return body

    def chat_request(self, body: dict[str, Any]) -> ChatRequest:
        """The Chat Completions request; its faults named as the Responses API names them."""
        try:
            return parse_chat_request(orjson.dumps(body))
        except APIError as exc:
            raise renamed(exc) from None


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool["name"], "strict": tool.get("strict") is not False}
    for key in ("description", "parameters"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice["type"] == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    tools = [{"type": "function", "function": {"name": t["name"]}} for t in choice["tools"]]
    return {"type": "allowed_tools", "allowed_tools": {"mode": choice["mode"], "tools": tools}}


def _chat_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    spec = {key: fmt[key] for key in ("name", "description", "schema", "strict") if key in fmt}
    return {"type": "json_schema", "json_schema": spec}


# a fault found on the Chat Completions body -> the field of the Responses request
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^messages\b.*"), "input"),
    (re.compile(r"^tools\[(\d+)\]\.function\b"), r"tools[\1]"),
    (re.compile(r"^tool_choice\.function\b"), "tool_choice"),
    (re.compile(r"^tool_choice\.allowed_tools\b"), "tool_choice"),
    (re.compile(r"^response_format\.json_schema\b"), "text.format"),
    (re.compile(r"^response_format\b"), "text.format"),
    (re.compile(r"^max_completion_tokens$"), "max_output_tokens"),
    (re.compile(r"^reasoning_effort$"), "reasoning.effort"),
    (re.compile(r"^verbosity$"), "text.verbosity"),
    (re.compile(r"^logprobs$"), "include"),
)
WORDS = (
    ("'max_completion_tokens'", "'max_output_tokens'"),
    ("'response_format'", "'text.format'"),
    ("'reasoning_effort'", "'reasoning.effort'"),
    ("'verbosity'", "'text.verbosity'"),
)


def rename_param(param: str | None) -> str | None:
    if param is None:
        return None
    for pattern, replacement in RENAMES:
        if pattern.search(param):
            return pattern.sub(replacement, param, count=1)
    return param


def renamed(exc: APIError) -> APIError:
    """The same error, its `param` (and the field named in its message) in Responses terms."""
    message = exc.message
    for old, new in WORDS:
        message = message.replace(old, new)
    return APIError(
        message,
        status=exc.status,
        type=exc.type,
        param=rename_param(exc.param),
        code=exc.code,
        headers=exc.headers,
    )


def decode(body: bytes) -> dict[str, Any]:
    check_json_shape(body)
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise APIError(JSON_ERROR) from None
    if not isinstance(raw, dict):
        raise APIError(JSON_ERROR)
    return raw


def parse_responses_request(body: bytes) -> ResponsesRequest:
    """Validate a CreateResponse body; APIError naming the first fault."""
    raw = decode(body)
    for key in raw:
        if key not in KNOWN:
            raise unknown_parameter(key)
    for key in REFUSED:
        if raw.get(key) is not None:
            raise unsupported_parameter(key)
    obj = Obj(raw)
    if "model" not in raw:
        raise missing("model")
    model = obj.text("model")
    items = parse_input(obj)
    instructions = obj.string("instructions")
    previous = obj.string("previous_response_id")
    if not items and previous is None:
        raise missing("input")
    store = obj.boolean("store")
    background = obj.boolean("background") or False
    stream = obj.boolean("stream") or False
    options = obj.object("stream_options")
    if options is not None:
        options.boolean("include_obfuscation")
        options.only(("include_obfuscation",))
    max_output = obj.integer("max_output_tokens", minimum=16)
    obj.integer("max_tool_calls", minimum=1)
    obj.decimal("temperature", minimum=0, maximum=2)
    obj.decimal("top_p", minimum=0, maximum=1)
    obj.integer("top_logprobs", minimum=0, maximum=20)
    include = _include(obj)
    names = _tools(obj)
    _tool_choice(obj, names)
    obj.boolean("parallel_tool_calls")
    _text(obj)
    truncation = obj.enum("truncation", TRUNCATIONS) or "disabled"
    metadata = validate_metadata(raw.get("metadata"))
    obj.string("user")
    obj.string("safety_identifier", max_length=64)
    obj.string("prompt_cache_key")
    obj.enum("service_tier", SERVICE_TIERS)
    _reasoning(obj)
    if background and store is False:
        raise APIError("Background mode requires `store` to be true.", param="background")
    return ResponsesRequest(
        raw=raw,
        model=model,
        input=items,
        instructions=instructions,
        previous_response_id=previous,
        store=store is not False,
        background=background,
        stream=stream,
        max_output_tokens=max_output,
        truncation=truncation,
        metadata=metadata,
        include=include,
    )


def _include(obj: Obj) -> list[str]:
    values = obj.array("include", expected="an array of strings") or []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise invalid_type(f"include[{i}]", "a string", value)
        if value not in INCLUDES:
            raise unsupported_value(f"include[{i}]", value, INCLUDES)
    return list(values)


def _tools(obj: Obj) -> set[str]:
    """The function tools; their names."""
    tools = obj.objects("tools", expected="an array of objects", max_items=MAX_TOOLS) or []
    names: set[str] = set()
    for tool in tools:
        kind = tool.text("type")
        if kind != "function":
            raise unsupported_value(tool.path("type"), kind, ("function",))
        name = tool.name("name")
        tool.string("description")
        tool.object("parameters")
        tool.boolean("strict")
        tool.only(("type", "name", "description", "parameters", "strict"))
        if name in names:
            raise APIError(f"Invalid 'tools': duplicate function name '{name}'.", param="tools")
        names.add(name)
    return names


def _not_declared(name: str, param: str) -> APIError:
    return APIError(
        f"Tool choice '{name}' not found in 'tools' parameter.", param=param, code="invalid_value"
    )


def _tool_choice(obj: Obj, names: set[str]) -> None:
    value = obj.value("tool_choice")
    if value is None or isinstance(value, str):
        obj.enum("tool_choice", CHOICE_MODES)
        return
    choice = Obj.of(value, "tool_choice")
    kind = choice.text("type")
    if kind == "function":
        name = choice.text("name")
        choice.only(("type", "name"))
        if name not in names:
            raise _not_declared(name, "tool_choice")
    elif kind == "allowed_tools":
        choice.pick("mode", ("auto", "required"))
        for ref in choice.objects("tools", required=True, min_items=1) or []:
            ref.pick("type", ("function",))
            name = ref.text("name")
            ref.only(("type", "name"))
            if name not in names:
                raise _not_declared(name, ref.at)
        choice.only(("type", "mode", "tools"))
    else:
        raise unsupported_value("tool_choice.type", kind, ("function", "allowed_tools"))


def _text(obj: Obj) -> None:
    text = obj.object("text")
    if text is None:
        return
    text.enum("verbosity", VERBOSITIES)
    fmt = text.object("format")
    text.only(("format", "verbosity"))
    if fmt is None:
        return
    kind = fmt.pick("type", FORMATS)
    if kind != "json_schema":
        fmt.only(("type",))
        return
    fmt.name("name")
    fmt.string("description")
    fmt.child("schema")
    fmt.boolean("strict")
    fmt.only(("type", "name", "description", "schema", "strict"))


def _reasoning(obj: Obj) -> None:
    reasoning = obj.object("reasoning")
    if reasoning is None:
        return
    reasoning.string("effort")
    for key in ("summary", "generate_summary", "mode", "context"):
        if reasoning.has(key):
            raise unsupported_parameter(reasoning.path(key))
    reasoning.only(("effort", "summary", "generate_summary", "mode", "context"))
