"""The Messages API request: `parse_messages_request` validates it, `MessagesRequest` carries it
in the backend contract's terms (OpenAI message dicts, `ToolSpec`s, a `ToolChoice`).

Fields chatd cannot honour on any model are refused by name (`REFUSED`): the contract has
no way to carry them to a backend. `output_config.format` is the contract's strict
`json_schema` response format. `cache_control` anywhere is accepted and needs nothing:
every prompt goes through the prefix cache. Thinking blocks of earlier assistant turns are
dropped, as the Messages API itself drops them from the context.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from chatd.api.bounds import check_messages_size
from chatd.api.errors import APIError
from chatd.api.schemas import decode_json
from chatd.api.validate_tools import MAX_TOOLS
from chatd.api.validation import Obj, invalid_type, invalid_value
from chatd.backend import (
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
    ToolChoice,
    ToolSpec,
)

_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ROLES = ("user", "assistant")
SERVICE_TIERS = {"auto": "auto", "standard_only": "default"}  # Anthropic's -> the contract's
CHOICE_TYPES = ("auto", "any", "tool", "none")
CHOICE_MODES: dict[str, Literal["none", "auto", "required"]] = {
    "auto": "auto",
    "any": "required",  # one call or more, of any tool
    "tool": "required",  # with names = [the tool]
    "none": "none",
}
MAX_STOP_SEQUENCES = 64
MAX_TOOL_NAME = 128
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
BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking")
REFUSED_BLOCKS = {
    "document": "chatd reads no documents; send their text as text blocks",
    "search_result": "chatd takes no search results; send them as text blocks",
    "server_tool_use": "chatd runs no server tools",
    "web_search_tool_result": "chatd runs no server tools",
    "container_upload": "chatd runs no code-execution containers",
}
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


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
    messages = _system(top) + _messages(top)
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
        images=_images(raw),
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


def _system(top: Obj) -> list[dict[str, Any]]:
    value = top.value("system")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": value}] if value else []
    if not isinstance(value, list):
        raise invalid_type("system", "a string or an array of text blocks", value)
    texts = []
    for block in top.objects("system") or ():
        block.pick("type", ("text",))
        texts.append(block.text("text"))
        _text_extras(block)
    text = "\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


def _text_extras(block: Obj) -> None:
    """What a text block may carry besides its text, all of it without effect here."""
    block.object("cache_control")
    block.array("citations")
    block.only(("type", "text", "cache_control", "citations"))


def _messages(top: Obj) -> list[dict[str, Any]]:
    """The turns as OpenAI message dicts: tool_use -> tool_calls, tool_result -> tool."""
    turns = top.objects("messages", required=True, min_items=1) or []
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # tool_use ids the next turn must answer
    for i, turn in enumerate(turns):
        role = turn.pick("role", ROLES)
        turn.only(("role", "content"))
        blocks = _blocks(turn)
        if role == "assistant":
            _unanswered(pending, f"messages[{i - 1}]")
            out.append(_assistant(blocks))
            pending = [b.data["id"] for b in blocks or () if b.data["type"] == "tool_use"]
            continue
        answered = [b.data["tool_use_id"] for b in blocks or () if b.data["type"] == "tool_result"]
        for call_id in answered:
            if call_id not in pending:
                raise APIError(
                    f"{turn.path('content')}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {call_id}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message.",
                    param=turn.path("content"),
                )
            pending.remove(call_id)
        _unanswered(pending, f"messages[{i - 1}]")
        out += _user(turn, blocks)
    last = turns[-1]
    _unanswered(pending, last.at)
    if last.data["role"] == "assistant":
        raise APIError(
            f"{last.at}: the last message must have role 'user': chatd does not continue "
            "a prefilled assistant turn.",
            param=last.at,
        )
    return out


def _unanswered(ids: list[str], where: str) -> None:
    if ids:
        raise APIError(
            f"{where}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(ids)}. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message.",
            param=where,
        )


def _blocks(turn: Obj) -> list[Obj] | None:
    """The content blocks of a turn, each checked; None for string content."""
    content = turn.value("content", required=True)
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        raise invalid_type(turn.path("content"), "a string or an array of blocks", content)
    blocks = turn.objects("content") or []
    for block in blocks:
        _check_block(block, turn.data["role"])
    return blocks


def _check_block(block: Obj, role: str) -> None:
    kind = block.text("type")
    if kind in REFUSED_BLOCKS:
        raise APIError(
            f"{block.path('type')}: '{kind}' blocks are not supported by chatd: "
            f"{REFUSED_BLOCKS[kind]}.",
            param=block.path("type"),
        )
    if kind not in BLOCK_TYPES:
        raise invalid_value(block.path("type"), kind, BLOCK_TYPES)
    allowed = {
        "user": ("text", "image", "tool_result"),
        "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
    }[role]
    if kind not in allowed:
        raise APIError(
            f"{block.path('type')}: '{kind}' blocks may not appear in a '{role}' message.",
            param=block.path("type"),
        )
    if kind == "text":
        block.text("text")
        _text_extras(block)
    elif kind == "image":
        _check_image(block)
    elif kind == "tool_use":
        block.text("id")
        block.name("name", MAX_TOOL_NAME)
        block.child("input")
        block.object("cache_control")
        block.object("caller")  # who called it (the API's programmatic tool calling): no effect
        block.only(("type", "id", "name", "input", "cache_control", "caller"))
    elif kind == "tool_result":
        block.text("tool_use_id")
        block.boolean("is_error")
        block.object("cache_control")
        _tool_result_text(block)
        block.only(("type", "tool_use_id", "content", "is_error", "cache_control"))


def _check_image(block: Obj) -> None:
    source = block.child("source")
    kind = source.pick("type", ("base64", "url"))
    if kind == "base64":
        source.pick("media_type", MEDIA_TYPES)
        source.text("data")
        source.only(("type", "media_type", "data"))
    else:
        source.text("url")
        source.only(("type", "url"))
    block.object("cache_control")
    block.only(("type", "source", "cache_control"))


def _tool_result_text(block: Obj) -> str:
    content = block.value("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for part in block.objects("content") or ():
            kind = part.text("type")
            if kind != "text":
                raise APIError(
                    f"{part.path('type')}: chatd takes only text in a tool_result; not '{kind}'.",
                    param=part.path("type"),
                )
            texts.append(part.text("text"))
            _text_extras(part)
        text = "\n".join(texts)
    else:
        raise invalid_type(block.path("content"), "a string or an array of blocks", content)
    # the contract's tool message has no error flag: the model reads it in the text
    return f"Error: {text}" if block.data.get("is_error") else text


def _assistant(blocks: list[Obj] | None) -> dict[str, Any]:
    if blocks is None:
        return {"role": "assistant", "content": None}
    texts = [b.data["text"] for b in blocks if b.data["type"] == "text"]
    calls = [
        {
            "id": b.data["id"],
            "type": "function",
            "function": {
                "name": b.data["name"],
                "arguments": json.dumps(b.data["input"], ensure_ascii=False),
            },
        }
        for b in blocks
        if b.data["type"] == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(turn: Obj, blocks: list[Obj] | None) -> list[dict[str, Any]]:
    """A user turn: its tool results as `tool` messages, then the rest as one user message."""
    if blocks is None:
        return [{"role": "user", "content": turn.data["content"]}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.data["type"]
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.data["tool_use_id"],
                    "content": _tool_result_text(block),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block.data["text"]})
        else:
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.data)}})
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _image_url(block: dict[str, Any]) -> str:
    source = block["source"]
    if source["type"] == "url":
        return source["url"]
    return f"data:{source['media_type']};base64,{source['data']}"


def _images(raw: dict[str, Any]) -> list[str]:
    return [
        f"messages[{i}].content[{j}]"
        for i, turn in enumerate(raw["messages"])
        if isinstance(turn.get("content"), list)
        for j, block in enumerate(turn["content"])
        if block.get("type") == "image"
    ]


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
