"""parse_chat_request on `messages`: shapes, tool-call order, and what the model can read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatd.api.errors import APIError
from tests.validation_support import check_request

USER = {"role": "user", "content": "Hi"}
ROLES = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
CONTENT_TYPE = "one of a string or array of objects"


def error(messages: list[Any], **kwargs: Any) -> tuple[str | None, str | None, str]:
    raw = json.dumps({"model": "m", "messages": messages}).encode()
    with pytest.raises(APIError) as info:
        check_request(raw, **kwargs)
    return info.value.param, info.value.code, info.value.message


def accepts(messages: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
    raw = json.dumps({"model": "m", "messages": messages}).encode()
    return check_request(raw, **kwargs).messages


def call(call_id: str, name: str = "f") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def calling(*ids: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [call(i) for i in ids]}


def answer(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "42"}


def missing(param: str) -> tuple[str, str, str]:
    return param, "missing_required_parameter", f"Missing required parameter: '{param}'."


def bad_type(param: str, expected: str, got: str) -> tuple[str, str, str]:
    message = f"Invalid type for '{param}': expected {expected}, but got {got} instead."
    return param, "invalid_type", message


def bad_value(param: str, value: str, allowed: str) -> tuple[str, str, str]:
    return param, "invalid_value", f"Invalid value: '{value}'. Supported values are: {allowed}."


def part(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


TEXT = part("text", text="x")
IMAGE = part("image_url", image_url={"url": "data:image/png;base64,aGk="})
AUDIO = part("input_audio", input_audio={"data": "aGk=", "format": "wav"})
FILE = part("file", file={"file_id": "file-1"})

SHAPE_ERRORS = [
    (["ping"], bad_type("messages[0]", "an object", "a string")),
    ([{"content": "x"}], missing("messages[0].role")),
    ([{"role": "bogus", "content": "x"}], bad_value("messages[0].role", "bogus", ROLES)),
    ([{"role": "user"}], missing("messages[0].content")),
    (
        [{"role": "developer", "content": None}],
        bad_type("messages[0].content", CONTENT_TYPE, "null"),
    ),
    ([{"role": "user", "content": 7}], bad_type("messages[0].content", CONTENT_TYPE, "an integer")),
    (
        [{"role": "user", "content": "x", "name": 1}],
        bad_type("messages[0].name", "a string", "an integer"),
    ),
    (
        [{"role": "user", "content": ["x"]}],
        bad_type("messages[0].content[0]", "an object", "a string"),
    ),
    ([{"role": "user", "content": [{"text": "x"}]}], missing("messages[0].content[0].type")),
    (
        [{"role": "system", "content": [IMAGE]}],
        bad_value("messages[0].content[0].type", "image_url", "'text'"),
    ),
    (
        [{"role": "user", "content": [part("refusal", refusal="no")]}],
        bad_value(
            "messages[0].content[0].type",
            "refusal",
            "'text', 'image_url', 'input_audio', and 'file'",
        ),
    ),
    (
        [USER, {"role": "assistant", "content": [IMAGE]}],
        bad_value("messages[1].content[0].type", "image_url", "'text' and 'refusal'"),
    ),
    (
        [{"role": "user", "content": [part("audio")]}],
        bad_value(
            "messages[0].content[0].type", "audio", "'text', 'image_url', 'input_audio', and 'file'"
        ),
    ),
    ([{"role": "user", "content": [part("text")]}], missing("messages[0].content[0].text")),
    (
        [{"role": "user", "content": [part("text", text=1)]}],
        bad_type("messages[0].content[0].text", "a string", "an integer"),
    ),
    (
        [{"role": "user", "content": [part("image_url", image_url={})]}],
        missing("messages[0].content[0].image_url.url"),
    ),
    (
        [
            {
                "role": "user",
                "content": [part("image_url", image_url={"url": "data:x", "detail": "ultra"})],
            }
        ],
        bad_value("messages[0].content[0].image_url.detail", "ultra", "'auto', 'low', and 'high'"),
    ),
    (
        [
            {
                "role": "user",
                "content": [part("input_audio", input_audio={"data": "x", "format": "ogg"})],
            }
        ],
        bad_value("messages[0].content[0].input_audio.format", "ogg", "'wav' and 'mp3'"),
    ),
    (
        [{"role": "user", "content": [part("file", file={})]}],
        missing("messages[0].content[0].file.file_id"),
    ),
    ([USER, {"role": "tool", "content": "x"}], missing("messages[1].tool_call_id")),
    ([USER, {"role": "function", "content": "x"}], missing("messages[1].name")),
    ([USER, {"role": "function", "name": "f"}], missing("messages[1].content")),
    (
        [USER, {"role": "function", "name": "f", "content": 5}],
        bad_type("messages[1].content", "a string", "an integer"),
    ),
    ([USER, {"role": "assistant"}], missing("messages[1].content")),
    (
        [USER, {"role": "assistant", "content": None}],
        bad_type("messages[1].content", CONTENT_TYPE, "null"),
    ),
    (
        [USER, {"role": "assistant", "content": "x", "tool_calls": "x"}],
        bad_type("messages[1].tool_calls", "an array of objects", "a string"),
    ),
    (
        [USER, {"role": "assistant", "content": 7, "tool_calls": []}],
        bad_type("messages[1].content", CONTENT_TYPE, "an integer"),
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}],
        missing("messages[1].tool_calls[0].type"),
    ),
    (
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
            },
        ],
        missing("messages[1].tool_calls[0].function.arguments"),
    ),
    (
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "f"}}],
            },
        ],
        missing("messages[1].tool_calls[0].custom.input"),
    ),
    (
        [USER, {"role": "assistant", "function_call": {"name": "f"}}],
        missing("messages[1].function_call.arguments"),
    ),
]


@pytest.mark.parametrize(("messages", "expected"), SHAPE_ERRORS)
def test_message_shape(messages: list[Any], expected: tuple[str, str, str]) -> None:
    assert error(messages) == expected


def test_blank_part_type_lists_every_part_type() -> None:
    allowed = "'text', 'image_url', 'input_audio', 'refusal', 'audio', and 'file'"
    messages = [{"role": "system", "content": [part("", text="x")]}, USER]
    assert error(messages) == bad_value("messages[0].content[0].type", "", allowed)


def test_empty_tool_calls() -> None:
    messages = [USER, {"role": "assistant", "content": "x", "tool_calls": []}]
    assert error(messages) == (
        "messages[1].tool_calls",
        "empty_array",
        "Invalid 'messages[1].tool_calls': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
    )


def test_remote_image_urls_are_refused() -> None:
    image = part("image_url", image_url={"url": "https://example.com/a.png"})
    param = "messages[0].content[0].image_url.url"
    assert error([{"role": "user", "content": [image]}], input_modalities={"text", "image"}) == (
        param,
        "invalid_value",
        f"Invalid image URL: '{param}'. Expected a base64-encoded data URL with an image MIME "
        "type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got a value without the "
        "'data:' prefix.",
    )


def test_accepted_shapes_pass_through_untouched() -> None:
    messages = [
        {"role": "developer", "content": [TEXT], "name": "dev"},
        {"role": "system", "content": ""},
        {"role": "user", "content": []},
        {
            "role": "user",
            "content": [TEXT, part("text", text="y", prompt_cache_breakpoint={"mode": "explicit"})],
        },
        {"role": "assistant", "content": [TEXT, part("refusal", refusal="no")]},
        {"role": "assistant", "refusal": "no"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": None},
        {"role": "user", "content": "x", "reasoning_content": "kept, not judged"},
        calling("a", "b"),
        answer("b"),
        {"role": "tool", "tool_call_id": "a", "content": [TEXT]},
        {"role": "assistant", "content": "done"},
    ]
    assert accepts(messages) == messages


def test_tool_messages_follow_their_calls() -> None:
    assert error([USER, answer("a")]) == (
        "messages.[1].role",
        None,
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
        "message with 'tool_calls'.",
    )
    assert error([USER, calling("a"), answer("b")]) == (
        "messages.[2].tool_call_id",
        None,
        "Invalid parameter: 'tool_call_id' of 'b' not found in 'tool_calls' of previous message.",
    )
    assert error([USER, calling("a"), answer("a"), answer("a")])[0] == "messages.[3].tool_call_id"
    unanswered = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
    )
    assert error([USER, calling("a", "b"), answer("a"), USER]) == (
        "messages.[3].role",
        None,
        unanswered + "b",
    )
    assert error([USER, calling("a", "b")]) == ("messages", None, unanswered + "a, b")


def test_unreadable_parts_depend_on_input_modalities() -> None:
    def content(*parts: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "system", "content": "s"}, {"role": "user", "content": [TEXT, *parts]}]

    assert error(content(IMAGE)) == (
        "messages.[1].content.[1].type",
        None,
        "Invalid content type. image_url is only supported by certain models.",
    )
    assert error(content(FILE)) == (
        "messages.[1].content.[1].type",
        None,
        "Invalid content type. file is only supported by certain models.",
    )
    assert error(content(AUDIO), input_modalities={"text", "image"}) == (
        "messages[1]",
        "invalid_value",
        "Invalid 'messages[1]'. Content blocks are expected to be either text or image_url type.",
    )
    assert accepts(content(IMAGE), input_modalities={"text", "image"})
    assert accepts(content(IMAGE, AUDIO, FILE), input_modalities={"text", "image", "audio", "file"})


def test_assistant_audio_is_unsupported() -> None:
    assert error([USER, {"role": "assistant", "audio": {"id": "audio_1"}}]) == (
        "messages[1].audio",
        "unsupported_parameter",
        "Unsupported parameter: 'messages[1].audio' is not supported with this model.",
    )
