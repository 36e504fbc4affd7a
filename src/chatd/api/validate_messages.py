"""Validation of `messages`: the shape of each message, their order, what the model can read."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from chatd.api.errors import APIError
from chatd.api.validation import Obj, invalid_type, invalid_value, unsupported_parameter

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
PART_TYPES = ("text", "image_url", "input_audio", "refusal", "audio", "file")
ROLE_PARTS = {
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
}
# What a non-text part needs among the backend's input modalities.
PART_MODALITY = {"image_url": "image", "input_audio": "audio", "file": "file"}
# Members that let an assistant message go without content.
CONTENT_STAND_INS = ("tool_calls", "function_call", "refusal", "audio")
CONTENT_TYPE = "one of a string or array of objects"
IMAGE_DETAILS = ("auto", "low", "high")
AUDIO_FORMATS = ("wav", "mp3")


def check_messages(body: Obj) -> list[dict[str, Any]]:
    """The shape of every message; returns the messages as sent."""
    messages = body.objects("messages", required=True, expected="an array of objects", min_items=1)
    for message in messages or ():
        _check_message(message)
    return body.data["messages"]


def _check_message(message: Obj) -> None:
    role = message.pick("role", ROLES)
    message.string("name")
    if role == "assistant":
        _check_assistant(message)
    elif role == "function":
        message.text("name")
        content = message.value("content", required=True)
        if content is not None and not isinstance(content, str):
            raise invalid_type(message.path("content"), "a string", content)
    else:
        _check_content(message, ROLE_PARTS[role], required=True)
        if role == "tool":
            message.text("tool_call_id")


def _check_content(message: Obj, allowed: tuple[str, ...], *, required: bool) -> None:
    content = message.value("content", required=required)
    param = message.path("content")
    if isinstance(content, str) or (content is None and not required):
        return
    if not isinstance(content, list):
        raise invalid_type(param, CONTENT_TYPE, content)
    for j, part in enumerate(content):
        _check_part(Obj.of(part, f"{param}[{j}]"), allowed)


def _check_part(part: Obj, allowed: tuple[str, ...]) -> None:
    kind = part.pick("type", PART_TYPES)
    if kind not in allowed:
        raise invalid_value(part.path("type"), kind, allowed)
    if kind in ("text", "refusal"):
        part.text(kind)
    elif kind == "image_url":
        image = part.child("image_url")
        url = image.text("url")
        if not url.startswith("data:"):
            raise APIError(
                f"Invalid image URL: '{image.path('url')}'. Expected a base64-encoded data URL "
                "with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), "
                "but got a value without the 'data:' prefix.",
                param=image.path("url"),
                code="invalid_value",
            )
        image.enum("detail", IMAGE_DETAILS)
    elif kind == "input_audio":
        audio = part.child("input_audio")
        audio.text("data")
        audio.pick("format", AUDIO_FORMATS)
    elif kind == "file":
        file = part.child("file")
        for key in ("filename", "file_data", "file_id"):
            file.string(key)
        if not file.has("file_id") and not file.has("file_data"):
            raise APIError(
                f"Missing required parameter: '{file.path('file_id')}'.",
                param=file.path("file_id"),
                code="missing_required_parameter",
            )
    breakpoint_ = part.object("prompt_cache_breakpoint")
    if breakpoint_ is not None:
        breakpoint_.pick("mode", ("explicit",))


def _check_assistant(message: Obj) -> None:
    _check_content(message, ROLE_PARTS["assistant"], required=False)
    message.string("refusal")
    for call in message.objects("tool_calls", expected="an array of objects", min_items=1) or ():
        call.text("id")
        kind = call.pick("type", ("function", "custom"))
        spec = call.child(kind)
        spec.text("name")
        spec.text("arguments" if kind == "function" else "input")
    function_call = message.object("function_call")
    if function_call is not None:
        function_call.text("name")
        function_call.text("arguments")
    audio = message.object("audio")
    if audio is not None:
        audio.text("id")
    if not any(message.has(key) for key in ("content", *CONTENT_STAND_INS)):
        message.value("content", required=True)
        raise invalid_type(message.path("content"), CONTENT_TYPE, None)


def check_tool_sequence(messages: list[dict[str, Any]]) -> None:
    """Every tool message answers the assistant's tool_calls just before it, and all of them."""
    unanswered: list[str] | None = None
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            if unanswered is None:
                raise APIError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            call_id = message["tool_call_id"]
            if call_id not in unanswered:
                raise APIError(
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                    "'tool_calls' of previous message.",
                    param=f"messages.[{i}].tool_call_id",
                )
            unanswered.remove(call_id)
            continue
        if unanswered:
            raise _unanswered(unanswered, f"messages.[{i}].role")
        calls = message.get("tool_calls") if message["role"] == "assistant" else None
        unanswered = [call["id"] for call in calls] if calls else None
    if unanswered:
        raise _unanswered(unanswered, "messages")


def _unanswered(ids: list[str], param: str) -> APIError:
    return APIError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(ids),
        param=param,
    )


def check_readable(messages: list[dict[str, Any]], input_modalities: Collection[str]) -> None:
    """Reject content the model cannot take in."""
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("audio") is not None:
            raise unsupported_parameter(f"messages[{i}].audio")
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part["type"]
            if PART_MODALITY.get(kind, "text") in input_modalities:
                continue
            if kind == "input_audio":
                raise APIError(
                    f"Invalid 'messages[{i}]'. Content blocks are expected to be either text "
                    "or image_url type.",
                    param=f"messages[{i}]",
                    code="invalid_value",
                )
            raise APIError(
                f"Invalid content type. {kind} is only supported by certain models.",
                param=f"messages.[{i}].content.[{j}].type",
            )
