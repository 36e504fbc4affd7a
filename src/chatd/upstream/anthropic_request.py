"""Chat Completions request -> Anthropic Messages API request, as pure functions.

`build_body` turns a GenerationRequest into a Messages API body, or raises BackendError
(400, `param` set) for what the Messages API cannot express.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from chatd.backend import BackendError, GenerationRequest

API_VERSION = "2023-06-01"
# max_tokens is required by the Messages API; when the client sets none, chatd asks for
# the model's own output limit. A model missing here gets DEFAULT_MAX_TOKENS, the limit of
# the smallest current Claude model (and enough for any local model behind /v1/messages).
DEFAULT_MAX_TOKENS = 4096
MODEL_MAX_TOKENS = (  # longest prefix first
    ("claude-opus-4-1", 32000),
    ("claude-opus-4-0", 32000),
    ("claude-opus-4-20250514", 32000),
    ("claude-opus-4", 64000),  # opus-4-5 and later
    ("claude-sonnet-4", 64000),
    ("claude-haiku-4", 64000),
    ("claude-3-7-sonnet", 64000),
    ("claude-3-5-haiku", 8192),
    ("claude-3-5-sonnet", 8192),
    ("claude-3-haiku", 4096),
    ("claude-3-opus", 4096),
)
# Request fields the Messages API has no counterpart for: a 400, never silently dropped.
UNSUPPORTED = frozenset(
    {
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "prediction",
        "audio",
        "web_search_options",
        "verbosity",
        "min_p",
        "repetition_penalty",
        "ignore_eos",
        "moderation",
    }
)
SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}  # OpenAI's -> Anthropic's
SERVED_TIERS = {"standard": "default", "priority": "priority", "batch": "flex"}
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[^,]*)?;base64,(?P<data>.*)", re.S)


def refuse(field: str, model: str, why: str = "") -> BackendError:
    """The 400 for a field the Messages API cannot honour, naming the field and the model."""
    reason = f" {why}" if why else ""
    return BackendError(
        f"Unsupported parameter: '{field}' is not supported with model '{model}' "
        f"(an Anthropic Messages API model).{reason}",
        param=field,
        code="unsupported_parameter",
    )


def max_tokens_for(model: str) -> int:
    for prefix, limit in MODEL_MAX_TOKENS:
        if model.startswith(prefix):
            return limit
    return DEFAULT_MAX_TOKENS


def build_body(request: GenerationRequest, model: str, public_model: str) -> dict[str, Any]:
    """The Messages API body for one choice of `request` (`model`: the vendor's id).

    Raises BackendError (400, `param` set) for what the Messages API cannot express.
    """
    check_request(request, public_model)
    system, messages = translate_messages(request.messages)
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens or max_tokens_for(model),
        "stream": True,
    }
    if system:
        body["system"] = system
    if request.stop:
        body["stop_sequences"] = request.stop
    sampling = request.sampling
    if sampling.temperature != 1.0:
        body["temperature"] = sampling.temperature
    if sampling.top_p != 1.0:
        body["top_p"] = sampling.top_p
    if sampling.top_k:
        body["top_k"] = sampling.top_k
    body.update(translate_tools(request))
    extra = request.passthrough
    user = extra.get("safety_identifier") or extra.get("user")
    if user:
        body["metadata"] = {"user_id": user}
    tier = extra.get("service_tier")
    if tier is not None:
        body["service_tier"] = SERVICE_TIERS[tier]
    return body


def check_request(request: GenerationRequest, model: str) -> None:
    """What capabilities() cannot say: values the Messages API has no way to honour."""
    if request.sampling.temperature > 1:
        raise BackendError(
            f"Invalid 'temperature': {request.sampling.temperature} is above 1, the highest "
            f"value model '{model}' (an Anthropic Messages API model) takes.",
            param="temperature",
            code="invalid_value",
        )
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        raise refuse("response_format", model, f"Only type 'text' is; not '{fmt.type}'.")
    tier = request.passthrough.get("service_tier")
    if tier is not None and tier not in SERVICE_TIERS:
        raise refuse("service_tier", model, f"Only 'auto' and 'default' are; not '{tier}'.")
    modalities = request.passthrough.get("modalities") or ()
    if "audio" in modalities:
        raise refuse("modalities", model, "It answers in text only.")
    for tool in request.tools:
        if tool.kind != "function":
            raise refuse("tools", model, "Only function tools are; not custom tools.")


def translate_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system, messages): system and developer turns hoisted; same-role turns merged."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    legacy_ids: list[str] = []  # ids given to legacy function calls, answered in order
    for i, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message, i, legacy_ids)
        elif role == "tool":
            blocks = [_tool_result(message["tool_call_id"], message.get("content"))]
            role = "user"
        elif role == "function":
            call_id = legacy_ids.pop(0) if legacy_ids else f"call_fn_{i}"
            blocks = [_tool_result(call_id, message.get("content"))]
            role = "user"
        else:
            blocks = _user_blocks(message.get("content"))
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(text for text in system if text), turns


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or part.get("refusal") or "" for part in content)


def _text_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    # the Messages API refuses empty text blocks
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    texts = (part.get("text") or part.get("refusal") or "" for part in content)
    return [{"type": "text", "text": text} for text in texts if text]


def _user_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content)
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "image_url":
            blocks.append(image_block(part["image_url"]["url"]))
        elif part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def image_block(url: str) -> dict[str, Any]:
    """A data URL as a base64 source, an http(s) URL as a url source."""
    match = _DATA_URL.fullmatch(url)
    if match:
        source = {"type": "base64", "media_type": match["type"], "data": match["data"]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _assistant_blocks(
    message: dict[str, Any], i: int, legacy_ids: list[str]
) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"))
    if not blocks and message.get("refusal"):
        blocks = _text_blocks(message["refusal"])
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        param = f"messages.[{i}].tool_calls.[{j}].function.arguments"
        blocks.append(_tool_use(call["id"], function["name"], function["arguments"], param))
    legacy = message.get("function_call")
    if legacy is not None:
        call_id = f"call_fn_{i}"
        legacy_ids.append(call_id)
        param = f"messages.[{i}].function_call.arguments"
        blocks.append(_tool_use(call_id, legacy["name"], legacy["arguments"], param))
    return blocks


def _tool_use(call_id: str, name: str, arguments: str, param: str) -> dict[str, Any]:
    try:
        arguments_object = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        arguments_object = None
    if not isinstance(arguments_object, dict):
        raise BackendError(
            f"Invalid '{param}': the Messages API takes a tool call's arguments as a JSON "
            "object; this is not one.",
            param=param,
            code="invalid_value",
        )
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments_object}


def _tool_result(call_id: str, content: str | list[dict[str, Any]] | None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    text = _text_blocks(content)
    if text:
        block["content"] = text
    return block


def translate_tools(request: GenerationRequest) -> dict[str, Any]:
    """`tools` and `tool_choice` in the Messages API's terms (empty without tools)."""
    if not request.tools:
        return {}
    choice = request.tool_choice
    names = None if choice is None else choice.names
    # an allow-list is expressed by declaring only the allowed tools
    tools = [t for t in request.tools if names is None or t.name in names]
    declared = []
    for tool in tools:
        entry: dict[str, Any] = {
            "name": tool.name,
            "input_schema": tool.parameters or {"type": "object", "properties": {}},
        }
        if tool.description:
            entry["description"] = tool.description
        if tool.strict:
            entry["strict"] = True
        declared.append(entry)
    mode = "auto" if choice is None else choice.mode
    if mode == "none":
        return {"tools": declared, "tool_choice": {"type": "none"}}
    if mode == "auto":
        anthropic_choice: dict[str, Any] = {"type": "auto"}
    elif names is not None and len(names) == 1:
        anthropic_choice = {"type": "tool", "name": names[0]}
    else:
        anthropic_choice = {"type": "any"}
    if not request.parallel_tool_calls or request.legacy_functions:
        anthropic_choice["disable_parallel_tool_use"] = True
    return {"tools": declared, "tool_choice": anthropic_choice}
