"""Input items: validated, given ids (the stored form), and turned into chat messages.

The Responses API's conversation is a list of items (messages, function calls,
their outputs). chatd keeps them in the form `input_items` lists them
(`InputMessageResource`, `OutputMessage`, `FunctionToolCallResource`, ...) and
turns them into Chat Completions messages for the `Backend` contract.
"""

from __future__ import annotations

import secrets
from typing import Any

from chatd.api.errors import APIError
from chatd.api.validation import (
    Obj,
    invalid_type,
    invalid_value,
    missing,
    unsupported_parameter,
    unsupported_value,
)

ITEM_TYPES = ("message", "function_call", "function_call_output")
ROLES = ("user", "assistant", "system", "developer")
INPUT_PARTS = ("input_text", "input_image", "input_file")
ASSISTANT_PARTS = ("output_text", "refusal")
IMAGE_DETAILS = ("auto", "low", "high", "original")
STATUSES = ("in_progress", "completed", "incomplete")
MAX_ITEMS = 2048
MAX_ID = 128  # the store's item id column
# members of call items the SDKs send back as null (refused when set)
OPTIONAL = ("namespace", "caller", "created_by")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def parse_input(body: Obj) -> list[dict[str, Any]]:
    """`input` (a string or items) in the stored form, each item with an `id`."""
    value = body.value("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [_message("user", [{"type": "input_text", "text": value}])]
    if not isinstance(value, list):
        raise invalid_type("input", "one of a string or array of input items", value)
    items = body.objects("input", expected="an array of objects", max_items=MAX_ITEMS) or []
    return [_item(item) for item in items]


def _refuse(item: Obj, keys: tuple[str, ...]) -> None:
    """Members of the spec that chatd cannot honour: refused by name when set."""
    for key in keys:
        if item.has(key):
            raise unsupported_parameter(item.path(key))


def _message(role: str, content: list[dict[str, Any]], item_id: str | None = None) -> dict:
    item: dict[str, Any] = {
        "id": item_id or new_id("msg"),
        "type": "message",
        "role": role,
        "content": content,
        "status": "completed",
    }
    return item


def _item(item: Obj) -> dict[str, Any]:
    kind = item.value("type")
    if kind is None and "role" in item.data:
        kind = "message"
    if kind is None:
        raise missing(item.path("type"))
    if not isinstance(kind, str):
        raise invalid_type(item.path("type"), "a string", kind)
    if kind not in ITEM_TYPES:
        raise unsupported_value(item.path("type"), kind, ITEM_TYPES)
    item_id = item.string("id", max_length=MAX_ID)
    if item_id is not None and "\x00" in item_id:  # PostgreSQL's text cannot hold it
        raise APIError(
            "Invalid 'id': strings cannot contain the null character (\\u0000).",
            param=item.path("id"),
            code="invalid_value",
        )
    item.enum("status", STATUSES)
    if kind == "message":
        return _message_item(item, item_id)
    _refuse(item, ("namespace", "caller"))
    if kind == "function_call":
        item.only(("type", "id", "call_id", "name", "arguments", "status", *OPTIONAL))
        return {
            "id": item_id or new_id("fc"),
            "type": "function_call",
            "call_id": item.text("call_id"),
            "name": item.name("name", max_length=128),
            "arguments": item.text("arguments"),
            "status": "completed",
        }
    item.only(("type", "id", "call_id", "output", "status", "name", *OPTIONAL))
    output = item.value("output", required=True)
    if isinstance(output, list):
        parts = item.objects("output") or []
        output = "".join(_text_part(part, ("input_text",)) for part in parts)
    elif not isinstance(output, str):
        raise invalid_type(item.path("output"), "one of a string or array of objects", output)
    return {
        "id": item_id or new_id("fco"),
        "type": "function_call_output",
        "call_id": item.text("call_id"),
        "output": output,
        "status": "completed",
    }


def _message_item(item: Obj, item_id: str | None) -> dict[str, Any]:
    role = item.pick("role", ROLES)
    item.only(("type", "id", "role", "content", "status", "phase"))
    content = item.value("content", required=True)
    if role == "assistant":
        if isinstance(content, str):
            parts = [_output_text(content)]
        else:
            objs = item.objects("content", expected="one of a string or array of objects")
            parts = [_assistant_part(part) for part in objs or []]
        message = _message(role, parts, item_id)
        return message
    if isinstance(content, str):
        return _message(role, [{"type": "input_text", "text": content}], item_id)
    objs = item.objects("content", expected="one of a string or array of objects") or []
    return _message(role, [_input_part(part, role) for part in objs], item_id)


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _text_part(part: Obj, allowed: tuple[str, ...]) -> str:
    kind = part.pick("type", allowed)
    if kind != "input_text":
        raise unsupported_value(part.path("type"), kind, ("input_text",))
    part.only(("type", "text"))
    return part.text("text")


def _assistant_part(part: Obj) -> dict[str, Any]:
    kind = part.pick("type", ASSISTANT_PARTS)
    if kind == "refusal":
        part.only(("type", "refusal"))
        return {"type": "refusal", "refusal": part.text("refusal")}
    part.array("annotations")
    part.array("logprobs")
    part.only(("type", "text", "annotations", "logprobs"))
    return _output_text(part.text("text"))


def _input_part(part: Obj, role: str) -> dict[str, Any]:
    kind = part.pick("type", INPUT_PARTS)
    if kind == "input_text":
        part.only(("type", "text"))
        return {"type": "input_text", "text": part.text("text")}
    if role != "user":
        raise invalid_value(part.path("type"), kind, ("input_text",))
    if kind == "input_image":
        part.only(("type", "image_url", "file_id", "detail"))
        detail = part.enum("detail", IMAGE_DETAILS) or "auto"
        if part.has("file_id"):
            raise unsupported_value(part.path("file_id"), "file_id", ("image_url",))
        return {"type": "input_image", "image_url": part.text("image_url"), "detail": detail}
    part.only(("type", "file_data", "file_id", "filename", "file_url"))
    if part.has("file_id") or part.has("file_url"):
        raise APIError(
            "Only files sent inline as `file_data` are supported.",
            param=part.path("file_data"),
            code="unsupported_value",
        )
    return {
        "type": "input_file",
        "file_data": part.text("file_data"),
        "filename": part.string("filename"),
    }


def output_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output as items a next turn reads (the in-flight fields dropped)."""
    return [item for item in items if item.get("type") in ITEM_TYPES]


def to_messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """Items (stored form) -> Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append(_chat_message(item))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages


def _chat_message(item: dict[str, Any]) -> dict[str, Any]:
    role, parts = item["role"], item["content"]
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] == "output_text")
        refusal = "".join(p["refusal"] for p in parts if p["type"] == "refusal")
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if refusal:
            message["refusal"] = refusal
        return message
    if all(p["type"] == "input_text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": [_chat_part(p) for p in parts]}


def _chat_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "input_text":
        return {"type": "text", "text": part["text"]}
    if part["type"] == "input_image":
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": "auto"}}
    file: dict[str, Any] = {"file_data": part["file_data"]}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def unique_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items with an id each of its own: a repeated id (sent twice) gets a new one."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item["id"] in seen:
            item = {**item, "id": new_id(item["id"].partition("_")[0] or "item")}
        seen.add(item["id"])
        out.append(item)
    return out
