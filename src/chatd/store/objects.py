"""The API objects built from stored rows."""

from __future__ import annotations

from typing import Any

JSONDict = dict[str, Any]

REQUEST_ECHO: dict[str, Any] = {
    "seed": None,
    "top_p": 1.0,
    "temperature": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "tool_choice": None,
    "tools": None,
    "response_format": None,
}


def stored_completion(completion: JSONDict, request: JSONDict) -> JSONDict:
    """The completion as sent plus the request fields OpenAI's stored objects echo."""
    stored = dict(completion)
    stored.pop("metadata", None)
    for name, default in REQUEST_ECHO.items():
        stored.setdefault(name, request.get(name, default))
    stored.setdefault("input_user", request.get("user"))
    stored.setdefault("service_tier", "default")
    return stored


def with_metadata(stored: JSONDict, metadata: dict[str, str]) -> JSONDict:
    stored["metadata"] = metadata
    return stored


def message_id(completion_id: str, position: int) -> str:
    return f"{completion_id}-{position}"


def message_position(completion_id: str, item_id: str) -> int | None:
    """The position a message id names, or None if it is not one of this completion's."""
    prefix = f"{completion_id}-"
    if not item_id.startswith(prefix) or not item_id[len(prefix) :].isdigit():
        return None
    return int(item_id[len(prefix) :])


def _text(parts: list[Any]) -> str | None:
    texts = [
        part["text"]
        for part in parts
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts) if texts else None


def message_item(completion_id: str, position: int, message: JSONDict) -> JSONDict:
    """An input message as the messages list shows it: with an id and content_parts."""
    item: JSONDict = {"id": message_id(completion_id, position), **message}
    content = message.get("content")
    if isinstance(content, list):
        item["content"] = _text(content)
        item["content_parts"] = content
    else:
        item["content_parts"] = None
    item.setdefault("name", None)
    item.setdefault("refusal", None)
    return item
