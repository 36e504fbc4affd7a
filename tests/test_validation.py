"""parse_chat_request: OpenAI's error objects for bad requests, GenerationRequests for good ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatd.api.errors import APIError
from chatd.api.schemas import JSON_ERROR, ChatRequest
from tests.validation_support import check_request

EXAMPLES = json.loads((Path(__file__).parent / "fixtures" / "error_examples.json").read_text())
USER = {"role": "user", "content": "Hi"}
BASE: dict[str, Any] = {"model": "m", "messages": [USER]}

# Recorded OpenAI errors whose behaviour chatd deliberately does not share.
SKIPPED = {
    "frequency_penalty=2+reasoning_effort=low": "chatd knows reasoning_effort (accepts 'none', "
    "refuses other values as unsupported_value); gpt-4 did not know the field",
    "prediction=Hello+store=true": "chatd supports predicted outputs",
    "presence_penalty=1+response_format=[object Object]": "chatd supports json_object",
    "modalities=text": "a rule of the audio-only model gpt-4o-audio-preview",
    "model=foo": "unknown models are the router's 404, decided after validation",
    "max_tokens=1000000000": "the context length is checked by the engine",
    "service_tier=foo": "chatd accepts the newer tiers, so the list of supported values is longer",
}


def body(**fields: Any) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


def parse(**fields: Any) -> ChatRequest:
    return check_request(body(**fields))


def error(raw: bytes, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(APIError) as info:
        check_request(raw, **kwargs)
    assert info.value.status == 400
    return info.value.body()["error"]


def fails(param: str | None, code: str | None, message: str, **fields: Any) -> None:
    got = error(body(**fields))
    assert got == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def function_tool(name: str, **function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **function}}


def custom_tool(name: str, **custom: Any) -> dict[str, Any]:
    return {"type": "custom", "custom": {"name": name, **custom}}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["scenario"][:60] for e in EXAMPLES])
def test_recorded_openai_error(example: dict[str, Any]) -> None:
    if example["scenario"] in SKIPPED:
        pytest.skip(SKIPPED[example["scenario"]])
    with pytest.raises(APIError) as info:
        check_request(json.dumps(example["request"]).encode())
    assert info.value.status == example["status"]
    assert info.value.body() == example["body"]


def test_every_skip_names_an_example() -> None:
    assert set(SKIPPED) <= {e["scenario"] for e in EXAMPLES}


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[]",
        b'"x"',
        b"null",
        b'{"a": NaN}',
        b'{"a": 1e400}',
        b"\xff",
        b'{"a": "\\ud800"}',
    ],
)
def test_unparseable_body(raw: bytes) -> None:
    assert error(raw) == {
        "message": JSON_ERROR,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_top_level_presence() -> None:
    assert error(b'{"messages": []}')["message"] == "you must provide a model parameter"
    assert error(b'{"model": "m", "foo": 1}')["param"] == "messages"
    fails(None, None, "Unrecognized request argument supplied: foo", foo=1, n="bad")
    fails(
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        messages=[],
    )


TYPE_ERRORS = [
    ("model", 5, "a string", "an integer"),
    ("messages", "hi", "an array of objects", "a string"),
    ("temperature", True, "a decimal", "a boolean"),
    ("top_p", [], "a decimal", "an array"),
    ("n", True, "an integer", "a boolean"),
    ("n", 1.0, "an integer", "a decimal number"),
    ("seed", 1.5, "an integer", "a decimal number"),
    ("max_tokens", {}, "an integer", "an object"),
    ("stream", 1, "a boolean", "an integer"),
    ("logprobs", "true", "a boolean", "a string"),
    ("ignore_eos", "yes", "a boolean", "a string"),
    ("top_k", 0.5, "an integer", "a decimal number"),
    ("min_p", "x", "a decimal", "a string"),
    ("safety_identifier", 1, "a string", "an integer"),
    ("prompt_cache_key", {}, "a string", "an object"),
    ("stop", {}, "one of a string or array of strings", "an object"),
    (
        "service_tier",
        {},
        "one of 'auto', 'default', 'fast', 'flex', 'priority', or 'scale'",
        "an object",
    ),
    ("prompt_cache_retention", 1, "one of 'in_memory' or '24h'", "an integer"),
    ("prompt_cache_options", "x", "an object", "a string"),
    ("stream_options", True, "an object", "a boolean"),
    ("tools", "none", "an array of objects", "a string"),
    ("functions", "x", "an array of function definitions", "a string"),
    ("tool_choice", 7, "one of one of 'none', 'auto', or 'required' or object", "an integer"),
    ("function_call", 7, "one of one of 'none' or 'auto' or object", "an integer"),
    ("modalities", "text", "an array of strings", "a string"),
    ("audio", "alloy", "an object", "a string"),
    ("web_search_options", [], "an object", "an array"),
    ("verbosity", 1, "a string", "an integer"),
]


@pytest.mark.parametrize(("key", "value", "expected", "got"), TYPE_ERRORS)
def test_type_error(key: str, value: Any, expected: str, got: str) -> None:
    message = f"Invalid type for '{key}': expected {expected}, but got {got} instead."
    fails(key, "invalid_type", message, **{key: value})


RANGE_ERRORS = [
    ("temperature", 2.5, "decimal_above_max_value", "<= 2"),
    ("temperature", -0.1, "decimal_below_min_value", ">= 0"),
    ("top_p", 1.01, "decimal_above_max_value", "<= 1"),
    ("frequency_penalty", -2.5, "decimal_below_min_value", ">= -2"),
    ("presence_penalty", 3, "decimal_above_max_value", "<= 2"),
    ("n", 0, "integer_below_min_value", ">= 1"),
    ("n", 129, "integer_above_max_value", "<= 128"),
    ("max_completion_tokens", -5, "integer_below_min_value", ">= 1"),
    ("seed", 2**63, "integer_above_max_value", "<= 9223372036854775807"),
    ("seed", -(2**63) - 1, "integer_below_min_value", ">= -9223372036854775808"),
    ("top_k", -1, "integer_below_min_value", ">= 0"),
    ("min_p", 1.5, "decimal_above_max_value", "<= 1"),
    ("repetition_penalty", 0, "decimal_below_min_value", "> 0"),
    ("repetition_penalty", 2.5, "decimal_above_max_value", "<= 2"),
]


@pytest.mark.parametrize(("key", "value", "code", "bound"), RANGE_ERRORS)
def test_range_error(key: str, value: Any, code: str, bound: str) -> None:
    kind, side, word = code.split("_")[:3]
    message = (
        f"Invalid '{key}': {kind} {side} {word}imum value. "
        f"Expected a value {bound}, but got {value} instead."
    )
    fails(key, code, message, **{key: value})


def test_top_logprobs_above_max() -> None:
    message = (
        "Invalid 'top_logprobs': integer above maximum value. "
        "Expected a value <= 20, but got 21 instead."
    )
    fails("top_logprobs", "integer_above_max_value", message, logprobs=True, top_logprobs=21)


def test_string_limits() -> None:
    fails(
        "safety_identifier",
        "string_above_max_length",
        "Invalid 'safety_identifier': string too long. Expected a string with maximum length "
        "64, but got a string with length 65 instead.",
        safety_identifier="x" * 65,
    )


ENUM_ERRORS = [
    ("service_tier", "foo", "'auto', 'default', 'fast', 'flex', 'priority', and 'scale'"),
    ("verbosity", "loud", "'low', 'medium', and 'high'"),
    (
        "reasoning_effort",
        "extreme",
        "'none', 'minimal', 'low', 'medium', 'high', 'xhigh', and 'max'",
    ),
    ("tool_choice", "bogus", "'none', 'auto', and 'required'"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), ENUM_ERRORS)
def test_enum_error(key: str, value: str, allowed: str) -> None:
    message = f"Invalid value: '{value}'. Supported values are: {allowed}."
    extra = {"tools": [function_tool("f")]} if key == "tool_choice" else {}
    fails(key, "invalid_value", message, **{key: value}, **extra)


def test_nested_enums_and_unknown_members() -> None:
    fails(
        "prompt_cache_retention",
        None,
        "Invalid prompt_cache_retention argument",
        prompt_cache_retention="1h",
    )
    fails(
        "prompt_cache_options.ttl",
        "invalid_value",
        "Invalid value: '1h'. Supported values are: '30m'.",
        prompt_cache_options={"ttl": "1h"},
    )
    fails(
        "prompt_cache_options.bogus",
        "unknown_parameter",
        "Unknown parameter: 'prompt_cache_options.bogus'.",
        prompt_cache_options={"bogus": 1},
    )
    fails(
        "stream_options.bogus",
        "unknown_parameter",
        "Unknown parameter: 'stream_options.bogus'.",
        stream=True,
        stream_options={"bogus": 1},
    )
    fails(
        "web_search_options.search_context_size",
        "invalid_value",
        "Invalid value: 'huge'. Supported values are: 'low', 'medium', and 'high'.",
        web_search_options={"search_context_size": "huge"},
    )
    fails(
        "moderation.model",
        "missing_required_parameter",
        "Missing required parameter: 'moderation.model'.",
        moderation={},
    )
    fails(
        "audio.voice",
        "missing_required_parameter",
        "Missing required parameter: 'audio.voice'.",
        audio={"format": "wav"},
    )


def test_stop() -> None:
    fails(
        "stop[1]",
        "invalid_type",
        "Invalid type for 'stop[1]': expected a string, but got an integer instead.",
        stop=["a", 1],
    )
    fails(
        "stop",
        "array_above_max_length",
        "Invalid 'stop': array too long. Expected an array with maximum length 4, "
        "but got an array with length 5 instead.",
        stop=list("abcde"),
    )
    assert parse(stop="x").to_generation("m").stop == ["x"]
    assert parse(stop=["a", "b", "c", "d"]).stop == ["a", "b", "c", "d"]
    assert parse(stop=[]).stop == parse(stop=None).stop == []


def test_logit_bias() -> None:
    for key in ("foo", "-1", "1.5", ""):
        fails(
            "logit_bias",
            None,
            f"Invalid key in 'logit_bias': {key}. You should only be "
            "submitting non-negative integers.",
            logit_bias={key: 1},
        )
    fails(
        "logit_bias",
        None,
        "Logit bias value -100.5 is invalid or outside of range [-100, 100]",
        logit_bias={"1": -100.5},
    )
    fails(
        "logit_bias.7",
        "invalid_type",
        "Invalid type for 'logit_bias.7': expected a decimal, but got a string instead.",
        logit_bias={"7": "x"},
    )
    bias = parse(logit_bias={"50256": -100, "7": 2.5}).to_generation("m").sampling.logit_bias
    assert bias == {50256: -100.0, 7: 2.5}


def test_metadata() -> None:
    fails(
        "metadata.k",
        "invalid_type",
        "Invalid type for 'metadata.k': expected a string, but got an integer instead.",
        metadata={"k": 7},
    )
    fails(
        "metadata",
        None,
        "The 'metadata' parameter is only allowed when 'store' is enabled.",
        metadata={"k": "v"},
    )
    request = parse(metadata={"k": "v"}, store=True)
    assert request.metadata == {"k": "v"}
    assert parse(metadata={str(i): "v" for i in range(16)}, store=True).store is True
    assert parse().metadata is None


def test_combinations() -> None:
    fails(
        "stream_options",
        None,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        stream=False,
        stream_options={"include_usage": True},
    )
    fails(
        "top_logprobs",
        None,
        "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
        logprobs=False,
        top_logprobs=2,
    )
    fails(
        "tool_choice",
        None,
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        tool_choice="none",
    )
    fails(
        "parallel_tool_calls",
        None,
        "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when "
        "'tools' are specified.",
        parallel_tool_calls=True,
    )
    fails(
        "function_call",
        None,
        "Invalid value for 'function_call': 'function_call' is only allowed when 'functions' "
        "are specified.",
        function_call="auto",
    )
    fails(
        "functions",
        None,
        "Invalid value for 'functions': 'functions' is not allowed when 'tools' are "
        "specified. Use 'tools' only.",
        functions=[{"name": "f"}],
        tools=[function_tool("g")],
    )


def test_features_this_model_lacks() -> None:
    for key, value in [
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("web_search_options", {}),
        ("verbosity", "medium"),
        ("moderation", {"model": "omni-moderation-latest"}),
    ]:
        fails(
            key,
            "unsupported_parameter",
            f"Unsupported parameter: '{key}' is not supported with this model.",
            **{key: value},
        )
    fails(
        "modalities",
        "unsupported_value",
        "Unsupported value: 'modalities' does not support "
        "'audio' with this model. Supported values are: 'text'.",
        modalities=["text", "audio"],
    )
    fails(
        "reasoning_effort",
        "unsupported_value",
        "Unsupported value: 'reasoning_effort' does "
        "not support 'low' with this model. Supported values are: 'none'.",
        reasoning_effort="low",
    )


def test_inert_fields_are_accepted() -> None:
    request = parse(
        user="u1",
        safety_identifier="s" * 64,
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        prompt_cache_options={"ttl": "30m", "mode": "explicit"},
        service_tier="flex",
        reasoning_effort="none",
        verbosity=None,
        modalities=["text"],
        audio=None,
        web_search_options=None,
        moderation=None,
        stream=None,
        store=None,
    )
    assert (request.user, request.service_tier, request.stream, request.store) == (
        "u1",
        "flex",
        False,
        False,
    )
    assert request.to_generation("m").prompt_cache_key == "k"
    assert request.raw["prompt_cache_options"] == {"ttl": "30m", "mode": "explicit"}
