"""The turns of a Messages API request (`system`, `messages`) checked and turned into the
contract's OpenAI message dicts: `tool_use` -> `tool_calls`, `tool_result` -> `tool`
messages, `image` -> `image_url` parts. Every `tool_use` is answered by a `tool_result` in
the next turn; thinking blocks of earlier turns are dropped, as the Messages API drops them.
"""

from __future__ import annotations

import json
from typing import Any

from chatd.api.errors import APIError
from chatd.api.validation import Obj, invalid_type, invalid_value

ROLES = ("user", "assistant")
MAX_TOOL_NAME = 128
BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking")
REFUSED_BLOCKS = {
    "document": "chatd reads no documents; send their text as text blocks",
    "search_result": "chatd takes no search results; send them as text blocks",
    "server_tool_use": "chatd runs no server tools",
    "web_search_tool_result": "chatd runs no server tools",
    "container_upload": "chatd runs no code-execution containers",
}
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def system_messages(top: Obj) -> list[dict[str, Any]]:
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
        text_extras(block)
    text = "\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


def text_extras(block: Obj) -> None:
    """What a text block may carry besides its text, all of it without effect here."""
    block.object("cache_control")
    block.array("citations")
    block.only(("type", "text", "cache_control", "citations"))


def turn_messages(top: Obj) -> list[dict[str, Any]]:
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
        text_extras(block)
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
            text_extras(part)
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


def image_paths(raw: dict[str, Any]) -> list[str]:
    return [
        f"messages[{i}].content[{j}]"
        for i, turn in enumerate(raw["messages"])
        if isinstance(turn.get("content"), list)
        for j, block in enumerate(turn["content"])
        if block.get("type") == "image"
    ]
