"""chatd's streams have the shape of the real API's: compared with streams recorded from it.

tests/fixtures/streams/ holds raw `text/event-stream` bodies the OpenAI API sent
(gpt-4o-2024-08-06, from the openai-python repository's test snapshots). For each,
chatd answers a request of the same kind, and both streams are reduced to what a
client reads: the fields of each chunk and of each choice, the first delta, the
sequence of delta kinds per choice, the finish chunk and the usage chunk. The
content differs (another model); the shape may not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.test_chat import stream

STREAMS = Path(__file__).parent / "fixtures" / "streams"
# fields the API added after the recordings (2024), both in today's schema; `usage` is
# null on every chunk but the last when include_usage is set
NEWER_FIELDS = {"service_tier", "usage"}

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "temperature": {"type": "number"},
        "units": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city", "temperature", "units"],
    "additionalProperties": False,
}
WEATHER_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "Location", "schema": WEATHER_SCHEMA, "strict": True},
}
ASK = [{"role": "user", "content": "What's the weather like in SF?"}]


def tool(name: str, strict: bool) -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    return {
        "type": "function",
        "function": {"name": name, "parameters": parameters, "strict": strict},
    }


def recorded(name: str) -> list[dict[str, Any]]:
    lines = [line for line in (STREAMS / name).read_text().splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def kinds(chunks: list[dict[str, Any]]) -> dict[int, list[str]]:
    """Each choice's deltas as a sequence of kinds; a run of one kind counts once."""
    out: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            seen = []
            if "role" in delta:
                seen.append("open")
            if delta.get("content"):
                seen.append("content")
            for call in delta.get("tool_calls") or []:
                seen.append("call" if "id" in call else "arguments")
            if choice["finish_reason"]:
                seen.append("finish")
            sequence = out.setdefault(choice["index"], [])
            for kind in seen:
                if not sequence or sequence[-1] != kind or kind == "call":
                    sequence.append(kind)
    return out


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]


def assert_same_shape(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    for chunk in ours:
        extra = chunk.keys() - theirs[0].keys()
        assert theirs[0].keys() <= chunk.keys() and extra <= NEWER_FIELDS, extra
        for choice in chunk["choices"]:
            assert choice.keys() == theirs[0]["choices"][0].keys()
    for chunk in ours[:-1]:
        assert chunk["choices"] and chunk.get("usage") is None
    assert kinds(ours) == kinds(theirs)

    # the usage chunk comes last, alone
    assert ours[-1]["choices"] == [] and theirs[-1]["choices"] == []
    assert theirs[-1]["usage"].keys() <= ours[-1]["usage"].keys()
    details = theirs[-1]["usage"]["completion_tokens_details"].keys()
    assert details <= ours[-1]["usage"]["completion_tokens_details"].keys()
    usage = ours[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # each choice ends with an empty delta that carries the finish reason, no logprobs
    for sequence in (ours, theirs):
        for chunk in sequence:
            for choice in chunk["choices"]:
                if choice["finish_reason"]:
                    assert choice["delta"] == {} and choice["logprobs"] is None


def first_delta(chunks: list[dict[str, Any]], index: int = 0) -> dict[str, Any]:
    return next(c for chunk in chunks for c in chunk["choices"] if c["index"] == index)


@pytest.mark.parametrize(
    ("name", "request_"),
    [
        ("parse_nothing.sse", {}),
        ("content_logprobs_events.sse", {"logprobs": True}),
        ("parse_pydantic_model.sse", {"response_format": WEATHER_FORMAT}),
        ("non_pydantic_response_format.sse", {"response_format": WEATHER_FORMAT}),
        ("parse_max_tokens_reached.sse", {"response_format": WEATHER_FORMAT, "max_tokens": 1}),
        ("parse_pydantic_model_multiple_choices.sse", {"response_format": WEATHER_FORMAT, "n": 3}),
    ],
)
def test_text_streams_have_the_real_shape(
    client: openai.OpenAI, name: str, request_: dict[str, Any]
) -> None:
    theirs = recorded(name)
    ours = stream(
        client,
        messages=ASK,
        temperature=0,
        stream_options={"include_usage": True},
        **{"max_tokens": 16, **request_},
    )
    assert_same_shape(ours, theirs)
    if name == "parse_max_tokens_reached.sse":
        assert finish_reasons(ours) == finish_reasons(theirs) == ["length"]
    else:  # what a small model writes may be cut short
        assert set(finish_reasons(ours)) <= {"stop", "length"}
    n = request_.get("n", 1)
    for index in range(n):
        opening, recorded_opening = first_delta(ours, index), first_delta(theirs, index)
        assert opening["delta"] == recorded_opening["delta"]
        assert opening["logprobs"] == recorded_opening["logprobs"]
    if request_.get("logprobs"):
        for chunks in (ours, theirs):
            probed = [c["logprobs"] for chunk in chunks for c in chunk["choices"] if c["logprobs"]]
            assert all(lp.keys() == {"content", "refusal"} for lp in probed)
            assert all(lp["refusal"] is None for lp in probed)
            entries = [entry for lp in probed for entry in lp["content"]]
            assert entries
            assert all(e.keys() == {"token", "logprob", "bytes", "top_logprobs"} for e in entries)


def call_chunks(chunks: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(call headers, argument fragments) of the stream's tool-call deltas."""
    calls = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    return [c for c in calls if "id" in c], [c for c in calls if "id" not in c]


@pytest.mark.parametrize(
    ("name", "tools", "parallel"),
    [
        ("parse_strict_tools.sse", [tool("get_weather", True)], False),
        ("parse_pydantic_tool.sse", [tool("GetWeatherArgs", True)], False),
        ("allows_non_strict_tools_but_no_parsing.sse", [tool("get_weather", False)], False),
        (
            "parse_multiple_pydantic_tools.sse",
            [tool("GetWeatherArgs", True), tool("GetStockPrice", True)],
            True,
        ),
    ],
)
def test_tool_call_streams_have_the_real_shape(
    client: openai.OpenAI, name: str, tools: list[dict[str, Any]], parallel: bool
) -> None:
    theirs = recorded(name)
    ours = stream(
        client,
        messages=[{"role": "user", "content": "What's the weather like in SF and in Rome?"}],
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=parallel,
        seed=5,
        max_tokens=60,
        stream_options={"include_usage": True},
    )
    if not parallel:
        assert_same_shape(ours, theirs)
    else:  # the number of calls is the model's choice: compare the shape of each call
        sequence = kinds(ours)[0]
        calls = sequence.count("call")
        assert calls >= 1
        assert sequence == ["open", *["call", "arguments"] * calls, "finish"]
        assert kinds(theirs)[0] == ["open", "call", "arguments", "call", "arguments", "finish"]
    # calls may follow one another until max_tokens cuts the last one
    assert finish_reasons(theirs) == ["tool_calls"]
    assert finish_reasons(ours) == ["tool_calls"] or (
        parallel and finish_reasons(ours) == ["length"]
    )
    ours_heads, ours_args = call_chunks(ours)
    theirs_heads, theirs_args = call_chunks(theirs)
    for head in ours_heads:
        assert head.keys() == theirs_heads[0].keys()
        assert head["function"].keys() == theirs_heads[0]["function"].keys()
        assert head["function"]["arguments"] == theirs_heads[0]["function"]["arguments"] == ""
        assert head["type"] == "function" and head["function"]["name"] in {
            t["function"]["name"] for t in tools
        }
    for fragment in ours_args:
        assert fragment.keys() == theirs_args[0].keys()
        assert fragment["function"].keys() == theirs_args[0]["function"].keys()
    opening = first_delta(ours)["delta"]
    assert opening["role"] == "assistant"
    assert opening.get("refusal") is None


def test_a_stream_that_calls_at_once_opens_with_null_content(client: openai.OpenAI) -> None:
    theirs = first_delta(recorded("parse_strict_tools.sse"))["delta"]
    ours = stream(
        client,
        messages=ASK,
        tools=[tool("get_weather", True)],
        tool_choice="required",
        max_tokens=24,
    )
    assert theirs["content"] is None
    opening = first_delta(ours)["delta"]
    assert opening.keys() == theirs.keys()
    assert opening["content"] is None and opening["tool_calls"][0]["function"]["name"]


def test_a_call_cut_before_its_name_leaks_no_markup(client: openai.OpenAI) -> None:
    chunks = stream(
        client,
        messages=ASK,
        tools=[tool("get_weather", True)],
        tool_choice="required",
        max_tokens=2,
    )
    text = "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])
    assert text == ""
    assert finish_reasons(chunks) == ["length"]
