"""parse_chat_request on valid requests: the GenerationRequest each one becomes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.api.errors import APIError
from chatd.backend import ResponseFormat, SamplingParams, ToolChoice, ToolSpec
from tests.test_validation import BASE, USER, custom_tool, function_tool, parse


def test_defaults_become_the_apis_defaults() -> None:
    request = parse()
    generation = request.to_generation("smollm2")
    assert generation.model == "smollm2"
    assert generation.messages == [USER]
    assert generation.sampling == SamplingParams()
    assert (generation.n, generation.max_tokens, generation.stop) == (1, None, [])
    assert (generation.logprobs, generation.top_logprobs, generation.ignore_eos) == (
        False,
        0,
        False,
    )
    assert (generation.tools, generation.tool_choice, generation.parallel_tool_calls) == (
        [],
        None,
        True,
    )
    assert (generation.response_format, generation.prediction) == (None, None)
    assert not generation.legacy_functions
    assert (request.stream, request.include_usage, request.store, request.n) == (
        False,
        False,
        False,
        1,
    )
    assert request.raw == BASE


def test_sampling_fields() -> None:
    generation = parse(
        temperature=0,
        top_p=0.5,
        top_k=40,
        min_p=0.05,
        frequency_penalty=1,
        presence_penalty=-1.5,
        repetition_penalty=1.1,
        seed=-(2**63),
        ignore_eos=True,
        max_completion_tokens=7,
        n=3,
        logprobs=True,
        stop=["", "\n"],
    ).to_generation("m")
    assert generation.sampling == SamplingParams(
        temperature=0.0,
        top_p=0.5,
        top_k=40,
        min_p=0.05,
        frequency_penalty=1.0,
        presence_penalty=-1.5,
        repetition_penalty=1.1,
        seed=-(2**63),
    )
    assert isinstance(generation.sampling.temperature, float)
    assert (generation.max_tokens, generation.n, generation.stop) == (7, 3, ["\n"])
    assert (generation.logprobs, generation.top_logprobs, generation.ignore_eos) == (True, 0, True)
    assert parse(max_tokens=9).to_generation("m").max_tokens == 9
    assert parse(logprobs=True, top_logprobs=20).to_generation("m").top_logprobs == 20


def test_streaming_fields() -> None:
    request = parse(stream=True, n=2, stream_options={"include_usage": True})
    assert (request.stream, request.include_usage, request.n) == (True, True, 2)
    assert not parse(stream=True, stream_options={"include_usage": False}).include_usage
    assert not parse(stream=True).include_usage


def test_tools_become_tool_specs() -> None:
    grammar = {"type": "grammar", "grammar": {"definition": "start: /a+/", "syntax": "lark"}}
    tools = [
        function_tool("get_weather", description="d", parameters={"type": "object"}, strict=True),
        custom_tool("shell", description="run", format=grammar),
        custom_tool("free"),
    ]
    generation = parse(tools=tools, parallel_tool_calls=False).to_generation("m")
    assert generation.tools == [
        ToolSpec("function", "get_weather", "d", {"type": "object"}, strict=True),
        ToolSpec("custom", "shell", "run", grammar=grammar),
        ToolSpec("custom", "free"),
    ]
    assert generation.tool_choice == ToolChoice("auto")
    assert generation.parallel_tool_calls is False
    assert not generation.legacy_functions


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", ToolChoice("none")),
        ("auto", ToolChoice("auto")),
        ("required", ToolChoice("required")),
        ({"type": "function", "function": {"name": "f"}}, ToolChoice("required", ["f"])),
        ({"type": "custom", "custom": {"name": "c"}}, ToolChoice("required", ["c"])),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [
                        {"type": "function", "function": {"name": "f"}},
                        {"type": "custom", "custom": {"name": "c"}},
                    ],
                },
            },
            ToolChoice("required", ["f", "c"]),
        ),
    ],
)
def test_tool_choice(choice: Any, expected: ToolChoice) -> None:
    tools = [function_tool("f"), custom_tool("c")]
    assert parse(tools=tools, tool_choice=choice).to_generation("m").tool_choice == expected


def test_legacy_functions() -> None:
    functions = [{"name": "f", "description": "d", "parameters": {"type": "object"}}]
    generation = parse(functions=functions).to_generation("m")
    assert generation.tools == [ToolSpec("function", "f", "d", {"type": "object"})]
    assert generation.legacy_functions
    assert generation.tool_choice == ToolChoice("auto")
    for call, expected in [
        ("none", ToolChoice("none")),
        ({"name": "f"}, ToolChoice("required", ["f"])),
    ]:
        assert parse(functions=functions, function_call=call).to_generation("m").tool_choice == (
            expected
        )


def test_response_format_and_prediction() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "n",
            "schema": {"type": "object"},
            "strict": True,
            "description": "d",
        },
    }
    assert parse(response_format=fmt).to_generation("m").response_format == ResponseFormat(
        type="json_schema", schema={"type": "object"}, name="n", description="d", strict=True
    )
    json_object = parse(response_format={"type": "json_object"}).to_generation("m")
    assert json_object.response_format == ResponseFormat(type="json_object")
    text = {"type": "content", "content": "abc"}
    parts = {
        "type": "content",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "bc"}],
    }
    assert parse(prediction=text).to_generation("m").prediction == "abc"
    assert parse(prediction=parts).to_generation("m").prediction == "abc"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "text", "auto", "function", "user", "assistant", "tool", "f"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "name",
                    "content",
                    "role",
                    "function",
                    "tool_calls",
                    "id",
                    "text",
                    "arguments",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    sorted(
        {
            "messages",
            "tools",
            "tool_choice",
            "functions",
            "function_call",
            "response_format",
            "stop",
            "logit_bias",
            "prediction",
            "audio",
            "stream_options",
            "metadata",
            "modalities",
            "n",
            "temperature",
        }
    )
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=4))
def test_any_json_gives_a_request_or_an_api_error(fields: dict[str, Any]) -> None:
    try:
        parse(**fields).to_generation("m")
    except APIError as exc:
        assert exc.status == 400 and exc.message
