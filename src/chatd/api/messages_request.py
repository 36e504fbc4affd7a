"""The Messages API request: `parse_messages_request` validates it, `MessagesRequest` carries it
in the backend contract's terms (OpenAI message dicts, `ToolSpec`s, a `ToolChoice`).

Fields chatd cannot honour on any model are refused by name (`REFUSED`): the contract has
no way to carry them to a backend. `output_config.format` is the contract's strict
`json_schema` response format. `cache_control` anywhere is accepted and needs nothing:
every prompt goes through the prefix cache. The turns are `chatd.api.messages_content`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from chatd.api.bounds import check_messages_size
from chatd.api.errors import APIError
from chatd.api.messages_content import MAX_TOOL_NAME, image_paths, system_messages, turn_messages
from chatd.api.schemas import decode_json
from chatd.api.validate_tools import MAX_TOOLS
from chatd.api.validation import Obj, invalid_type
from chatd.backend import (
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
    ToolChoice,
    ToolSpec,
)

_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SERVICE_TIERS = {"auto": "auto", "standard_only": "default"}  # Anthropic's -> the contract's
CHOICE_TYPES = ("auto", "any", "tool", "none")
CHOICE_MODES: dict[str, Literal["none", "auto", "required"]] = {
    "auto": "auto",
    "any": "required",  # one call or more, of any tool
    "tool": "required",  # with names = [the tool]
    "none": "none",
}
MAX_STOP_SEQUENCES = 64
_WHITESPACE = re.compile(r"\s*")
# fields of the Messages API that no backend behind the contract can honour, and why
REFUSED = {
    "container": "chatd runs no code-execution containers",
    "mcp_servers": "chatd connects to no MCP servers",
    "context_management": "chatd does not edit the context of a conversation",
    "inference_geo": "chatd serves from where it runs",
    "diagnostics": "chatd keeps no earlier messages to compare prompts with",
    "workspace_id": "chatd attributes a request to its API key",
    "user_profile_id": "chatd attributes a request to its API key",
}
CREATE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "service_tier",
        "thinking",
        "cache_control",
        "speed",
        "output_config",
        "output_format",
    }
)
# what count_tokens takes: the prompt, not how to answer it
COUNT_FIELDS = frozenset(
    {
        *("model", "messages", "system", "tools", "tool_choice", "thinking"),
        *("cache_control", "speed", "output_config", "output_format"),
    }
)


@dataclass(slots=True)
class MessagesRequest:
    """A valid Messages API request, in the contract's terms."""

    raw: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]  # OpenAI message dicts, the system prompt first
    max_tokens: int | None
    stream: bool = False
    stop: list[str] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None  # output_config.format
    passthrough: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # the path of each image block

    def to_generation(self, model_id: str) -> GenerationRequest:
        return GenerationRequest(
            model=model_id,
            messages=self.messages,
            max_tokens=self.max_tokens,
            stop=self.stop,
            sampling=self.sampling,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            response_format=self.response_format,
            passthrough=dict(self.passthrough),
            raw=self.chat_body(),
        )

    def chat_body(self) -> dict[str, Any]:
        """The same request as a Chat Completions body: what an OpenAI-kind upstream relays."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "stream": self.stream,
            **self.passthrough,
        }
        if self.max_tokens is not None:
            body["max_completion_tokens"] = self.max_tokens
        if self.stop:
            body["stop"] = self.stop
        for key in ("temperature", "top_p", "top_k"):
            if self.raw.get(key) is not None:
                body[key] = self.raw[key]
        if self.tools:
            body["tools"] = [_chat_tool(tool) for tool in self.tools]
            body["tool_choice"] = _chat_tool_choice(self.tool_choice)
            body["parallel_tool_calls"] = self.parallel_tool_calls
        fmt = self.response_format
        if fmt is not None:
            spec = {"name": fmt.name, "schema": fmt.schema, "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        return body


def _chat_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: ToolChoice | None) -> str | dict[str, Any]:
    if choice is None:
        return "auto"
    if choice.names and len(choice.names) == 1:
        return {"type": "function", "function": {"name": choice.names[0]}}
    return choice.mode


def check_version(value: str | None) -> None:
    """The `anthropic-version` header: absent, or a date. chatd answers every version alike
    (the SDKs send newer dates than 2023-06-01, and the shapes served have not changed)."""
    if value is not None and not _VERSION.fullmatch(value):
        raise APIError(
            f"anthropic-version: '{value}' is not a version (a date: 2023-06-01).",
            param="anthropic-version",
        )


def parse_messages_request(body: bytes, *, counting: bool = False) -> MessagesRequest:
    """Validate a /v1/messages body (`counting`: a count_tokens body); APIError on a fault."""
    try:
        raw = decode_json(body)
    except APIError as exc:
        if exc.param is None and exc.code is None:  # the parser's: the OpenAI API's words
            raise APIError("The request body is not valid JSON.") from None
        raise
    known = COUNT_FIELDS if counting else CREATE_FIELDS
    for key in raw:
        if key in REFUSED:
            raise APIError(f"{key}: not supported by chatd: {REFUSED[key]}.", param=key)
        if key not in known:
            raise APIError(f"{key}: Extra inputs are not permitted.", param=key)
    check_messages_size(raw.get("messages"))
    top = Obj(raw)
    model = top.text("model")
    max_tokens = None
    if not counting:
        top.value("max_tokens", required=True)
        max_tokens = top.integer("max_tokens", minimum=1)
    _check_thinking(top)
    if top.enum("speed", ("standard", "fast")) == "fast":
        raise APIError(
            "speed: 'fast' is not supported by chatd: it serves every request at one speed.",
            param="speed",
        )
    top.object("cache_control")
    messages = system_messages(top) + turn_messages(top)
    tools = _tools(top)
    choice, parallel = _tool_choice(top, tools)
    request = MessagesRequest(
        raw=raw,
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=_output_format(top),
        images=image_paths(raw),
    )
    if not counting:
        _generation_fields(top, request)
    return request


def _generation_fields(top: Obj, request: MessagesRequest) -> None:
    """What only create takes: how to answer."""
    request.stream = bool(top.boolean("stream"))
    request.stop = _stop_sequences(top)
    temperature = top.decimal("temperature", minimum=0, maximum=1)
    top_p = top.decimal("top_p", minimum=0, maximum=1)
    top_k = top.integer("top_k", minimum=0)
    request.sampling = SamplingParams(
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        top_k=top_k or 0,
    )
    metadata = top.object("metadata")
    if metadata is not None:
        metadata.only(("user_id",))
        user_id = metadata.string("user_id", max_length=256)
        if user_id:
            request.passthrough["user"] = user_id
    tier = top.enum("service_tier", tuple(SERVICE_TIERS))
    if tier is not None:
        request.passthrough["service_tier"] = SERVICE_TIERS[tier]


def _output_format(top: Obj) -> ResponseFormat | None:
    """`output_config.format` (or the beta's top-level `output_format`): JSON matching a
    schema, guaranteed by the grammar as Chat Completions' strict `json_schema` is."""
    config = top.object("output_config")
    fmt = top.object("output_format")
    if config is not None:
        effort = config.enum("effort", ("low", "medium", "high", "xhigh", "max"))
        if effort is not None:
            raise APIError(
                f"output_config.effort: '{effort}' is not supported by chatd: its models "
                "answer with one effort.",
                param="output_config.effort",
            )
        fmt = config.object("format")
        config.only(("effort", "format"))
    if fmt is None:
        return None
    fmt.pick("type", ("json_schema",))
    schema = fmt.child("schema")
    fmt.only(("type", "schema"))
    return ResponseFormat("json_schema", schema.data, name="output", strict=True)


def _check_thinking(top: Obj) -> None:
    thinking = top.object("thinking")
    if thinking is None:
        return
    kind = thinking.pick("type", ("enabled", "disabled", "adaptive"))
    if kind != "disabled":
        raise APIError(
            f"thinking: type '{kind}' is not supported by chatd: its models answer without "
            "separate thinking blocks; leave 'thinking' out or set type 'disabled'.",
            param="thinking",
        )


def _tools(top: Obj) -> list[ToolSpec]:
    tools = top.objects("tools", max_items=MAX_TOOLS) or []
    specs = []
    seen: set[str] = set()
    for tool in tools:
        kind = tool.string("type")
        if kind not in (None, "custom"):
            raise APIError(
                f"{tool.path('type')}: '{kind}' is a server tool (or one Anthropic defines); "
                "chatd runs none: declare a custom tool with an input_schema instead.",
                param=tool.path("type"),
            )
        name = tool.name("name", MAX_TOOL_NAME)
        if name in seen:
            raise APIError(f"tools: Tool names must be unique; '{name}' is not.", param="tools")
        seen.add(name)
        schema = tool.child("input_schema")
        if schema.data.get("type") != "object":
            raise APIError(
                f"{schema.path('type')}: Input should be 'object'.", param=schema.path("type")
            )
        description = tool.string("description")
        strict = tool.boolean("strict")
        tool.object("cache_control")
        tool.only(("type", "name", "description", "input_schema", "cache_control", "strict"))
        specs.append(ToolSpec("function", name, description, schema.data, strict=bool(strict)))
    return specs


def _tool_choice(top: Obj, tools: list[ToolSpec]) -> tuple[ToolChoice | None, bool]:
    """(the choice, whether several calls may come); (None, True) without tools."""
    choice = top.object("tool_choice")
    if choice is None:
        return (ToolChoice("auto") if tools else None), True
    kind = choice.pick("type", CHOICE_TYPES)
    disable = choice.boolean("disable_parallel_tool_use") if kind != "none" else None
    name = choice.text("name") if kind == "tool" else None
    choice.only(("type", "name", "disable_parallel_tool_use") if kind != "none" else ("type",))
    if kind in ("any", "tool") and not tools:
        raise APIError(
            f"tool_choice: type '{kind}' needs tools, and 'tools' declares none.",
            param="tool_choice",
        )
    if name is not None and name not in {tool.name for tool in tools}:
        raise APIError(
            f"tool_choice.name: no tool named '{name}' is declared in 'tools'.",
            param="tool_choice.name",
        )
    if not tools:
        return None, True
    return ToolChoice(CHOICE_MODES[kind], [name] if name else None), not disable


def _stop_sequences(top: Obj) -> list[str]:
    stops = top.array("stop_sequences", max_items=MAX_STOP_SEQUENCES) or []
    for i, stop in enumerate(stops):
        if not isinstance(stop, str):
            raise invalid_type(f"stop_sequences[{i}]", "a string", stop)
        if _WHITESPACE.fullmatch(stop):
            raise APIError(
                f"stop_sequences[{i}]: each stop sequence must contain non-whitespace.",
                param=f"stop_sequences[{i}]",
            )
    return list(stops)
