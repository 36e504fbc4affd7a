"""The Anthropic translator on its own: recorded Messages API streams in, chatd events and
OpenAI chunks out; requests out in the Messages API's terms; vendor errors mapped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatd.api.completion import ChunkEncoder, CompletionBuilder, Envelope
from chatd.backend import (
    BackendError,
    Event,
    Finish,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    UpstreamError,
    Usage,
)
from chatd.upstream.anthropic_errors import error_from_body, relay_headers
from chatd.upstream.anthropic_request import DEFAULT_MAX_TOKENS, build_body
from chatd.upstream.anthropic_stream import StreamTranslator, sse_events
from tests.schema import validate

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
WEATHER = ToolSpec("function", "get_weather", "Weather of a city", {"type": "object"})
TIME = ToolSpec("function", "get_time", None, None)


def translate(name: str, index: int = 0) -> tuple[list[Event], StreamTranslator]:
    translator = StreamTranslator("anthropic", index)
    lines = (FIXTURES / name).read_text().splitlines()
    events = [e for kind, data in sse_events(lines) for e in translator.feed_raw(kind, data)]
    return events, translator


def as_openai(events: list[Event], usage: Usage) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chunks and the completion chatd's API layer makes of these events, validated."""
    start = events[0]
    assert isinstance(start, Start)
    envelope = Envelope.of(start, 1, False, False)
    encoder, builder = ChunkEncoder(envelope, include_usage=True), CompletionBuilder(envelope)
    chunks = []
    for event in [*events[1:], usage]:
        builder.add(event)
        chunks += encoder.encode(event)
    assert encoder.complete and builder.complete
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    completion = builder.result()
    validate("CreateChatCompletionResponse", completion)
    return chunks, completion


def test_several_tool_calls_get_their_own_index_and_whole_arguments() -> None:
    events, translator = translate("tool_calls.sse")
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    firsts = [c for c in calls if c.id is not None]
    assert [(c.call_index, c.id, c.name) for c in firsts] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        (1, "toolu_01RoGrn9cWFWHc1VbnKP4RYE", "get_weather"),
        (2, "toolu_01Kp2mXvW7yZqR3tLsN8dBcE", "get_time"),
    ]
    # later deltas of a call carry only argument fragments
    assert all(c.name is None and c.kind is None for c in calls if c.id is None)
    chunks, completion = as_openai(events, translator.usage())
    message = completion["choices"][0]["message"]
    assert message["content"] == "Okay, let's check both cities."
    arguments = [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]]
    assert arguments == [
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
        {"location": "Paris, France"},
        {},  # a call the stream gave no input_json_delta
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    streamed = [
        call["index"]
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or ()
    ]
    assert streamed == sorted(streamed) and set(streamed) == {0, 1, 2}
    assert completion["usage"]["prompt_tokens"] == 472
    assert completion["usage"]["completion_tokens"] == 89


def test_cache_reads_and_writes_count_as_prompt_tokens_once() -> None:
    events, translator = translate("cache_usage.sse")
    start = events[0]
    assert isinstance(start, Start)
    assert (start.model, start.service_tier) == ("claude-sonnet-4-5-20250929", "default")
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", "! Café ☕ is open."]
    _, completion = as_openai(events, translator.usage())
    usage = completion["usage"]
    assert usage["prompt_tokens"] == 21 + 188 + 1024
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1024
    assert usage["completion_tokens"] == 15
    assert usage["total_tokens"] == 21 + 188 + 1024 + 15
    # the thinking block is not part of the chat completion's answer
    assert completion["choices"][0]["message"]["content"] == "Hello! Café ☕ is open."


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_every_stop_reason_maps_to_a_finish_reason(reason: str, finish: str) -> None:
    events, translator = translate(f"stop_{reason}.sse", index=0)
    matched = "END" if reason == "stop_sequence" else None  # for the Messages API front door
    assert [e for e in events if isinstance(e, Finish)] == [Finish(0, finish, matched)]  # type: ignore[arg-type]
    assert translator.stopped
    _, completion = as_openai(events, translator.usage())
    assert completion["choices"][0]["finish_reason"] == finish
    assert completion["usage"]["completion_tokens"] == 4


def test_a_second_choice_keeps_its_index() -> None:
    events, _ = translate("tool_calls.sse", index=1)
    assert {e.index for e in events if not isinstance(e, Start)} == {1}


def test_an_error_event_mid_stream_raises_after_the_text_so_far() -> None:
    translator = StreamTranslator("anthropic")
    lines = (FIXTURES / "error_mid_stream.sse").read_text().splitlines()
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        for kind, data in sse_events(lines):
            seen += translator.feed_raw(kind, data)
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Once upon"]
    error = caught.value
    assert (error.status, error.code, error.retryable) == (503, "overloaded", True)
    assert error.upstream == "anthropic" and "Overloaded" in error.message


def test_an_error_event_before_message_start_is_a_retryable_429() -> None:
    translator = StreamTranslator("anthropic")
    lines = (FIXTURES / "error_before_start.sse").read_text().splitlines()
    with pytest.raises(UpstreamError) as caught:
        for kind, data in sse_events(lines):
            translator.feed_raw(kind, data)
    assert not translator.started
    assert (caught.value.status, caught.value.retryable) == (429, True)


def test_a_stream_whose_blocks_come_before_message_start_still_opens_with_start() -> None:
    translator = StreamTranslator("anthropic", 0, "claude-x")
    block = {"index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    start = {"message": {"model": "claude-x-1", "usage": {"input_tokens": 3}}}
    events = translator.feed("content_block_start", block)
    events += translator.feed("content_block_delta", delta)
    events += translator.feed("message_start", start)
    assert [type(e).__name__ for e in events] == ["Start", "TextDelta"]
    assert isinstance(events[0], Start) and events[0].model == "claude-x"
    assert translator.usage().prompt_tokens == 3


def test_a_message_start_after_message_stop_still_counts_its_usage() -> None:
    translator = StreamTranslator("anthropic", 0, "claude-x")
    block = {"index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    events = translator.feed("content_block_start", block)
    events += translator.feed("content_block_delta", delta)
    events += translator.feed("content_block_stop", {"index": 0})
    end = {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}
    events += translator.feed("message_delta", end)
    events += translator.feed("message_stop", {})
    late = {"message": {"usage": {"input_tokens": 1, "cache_read_input_tokens": 18}}}
    assert translator.feed("message_start", late) == []
    assert [type(e).__name__ for e in events] == ["Start", "TextDelta", "Finish"]
    usage = translator.usage()
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (19, 18, 1)


# --- requests ----------------------------------------------------------------------------


def body_of(**fields: Any) -> dict[str, Any]:
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    request = GenerationRequest(model="anthropic/claude-sonnet-4-5", **fields)
    return build_body(request, "claude-sonnet-4-5", request.model)


def test_system_and_developer_turns_become_system_and_same_roles_merge() -> None:
    body = body_of(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Bien."},
        ],
        stop=["END"],
        sampling=SamplingParams(temperature=0.5, top_p=0.9, top_k=40),
        passthrough={"user": "u-1", "safety_identifier": "s-1", "service_tier": "auto"},
    )
    assert body["system"] == "Be brief.\n\nUse French."
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "How are you?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Bien."}]},
    ]
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.5, 0.9, 40)
    assert body["metadata"] == {"user_id": "s-1"}
    assert body["service_tier"] == "auto"
    assert body["max_tokens"] == 64000 and body["stream"] is True
    assert body["model"] == "claude-sonnet-4-5"


def test_max_tokens_comes_from_the_request_or_a_documented_default() -> None:
    assert body_of(max_tokens=7)["max_tokens"] == 7
    request = GenerationRequest(model="x/local", messages=[{"role": "user", "content": "hi"}])
    assert build_body(request, "local", "x/local")["max_tokens"] == DEFAULT_MAX_TOKENS


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    ]
    body = body_of(
        messages=[
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "noon"}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEATHER, TIME],
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "call_1",
                "content": [{"type": "text", "text": "18C"}],
            },
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "noon"}],
            },
            {"type": "text", "text": "Thanks"},
        ],
    }
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object"},
            "description": "Weather of a city",
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected", "declared"),
    [
        (ToolChoice("none"), True, {"type": "none"}, ["get_weather", "get_time"]),
        (ToolChoice("auto"), True, {"type": "auto"}, ["get_weather", "get_time"]),
        (ToolChoice("required"), True, {"type": "any"}, ["get_weather", "get_time"]),
        (
            ToolChoice("required", ["get_time"]),
            True,
            {"type": "tool", "name": "get_time"},
            ["get_time"],
        ),
        (
            ToolChoice("auto", ["get_weather"]),
            False,
            {"type": "auto", "disable_parallel_tool_use": True},
            ["get_weather"],
        ),
        (
            ToolChoice("required"),
            False,
            {"type": "any", "disable_parallel_tool_use": True},
            ["get_weather", "get_time"],
        ),
    ],
)
def test_every_tool_choice_mode(
    choice: ToolChoice, parallel: bool, expected: dict[str, Any], declared: list[str]
) -> None:
    body = body_of(tools=[WEATHER, TIME], tool_choice=choice, parallel_tool_calls=parallel)
    assert body["tool_choice"] == expected
    assert [t["name"] for t in body["tools"]] == declared


def test_images_become_base64_or_url_sources() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]
    body = body_of(messages=[{"role": "user", "content": content}])
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"sampling": SamplingParams(temperature=1.5)}, "temperature"),
        ({"response_format": ResponseFormat(type="json_object")}, "response_format"),
        ({"passthrough": {"service_tier": "flex"}}, "service_tier"),
        ({"tools": [ToolSpec("custom", "shell")]}, "tools"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    }
                ]
            },
            "messages.[0].tool_calls.[0].function.arguments",
        ),
    ],
)
def test_what_the_messages_api_cannot_say_is_a_400_naming_field_and_model(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(BackendError) as caught:
        body_of(**fields)
    assert caught.value.status == 400 and caught.value.param == param
    if param != "temperature" and not param.startswith("messages"):
        assert "anthropic/claude-sonnet-4-5" in caught.value.message


# --- errors ------------------------------------------------------------------------------


def anthropic_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def test_vendor_errors_map_to_upstream_errors() -> None:
    limited = error_from_body(
        "anthropic", 429, anthropic_error("rate_limit_error", "slow down"), {"retry-after": "7"}
    )
    assert (limited.status, limited.retryable, limited.retry_after_s) == (429, True, 7.0)
    assert limited.headers == {"retry-after": "7"} and limited.code == "rate_limit_exceeded"
    overloaded = error_from_body(
        "anthropic", 529, anthropic_error("overloaded_error", "Overloaded"), {}
    )
    assert (overloaded.status, overloaded.retryable) == (503, True)
    for status in (401, 403):
        key = error_from_body(
            "anthropic", status, anthropic_error("authentication_error", "invalid x-api-key"), {}
        )
        assert (key.status, key.retryable) == (502, False)
        assert "anthropic" in key.message
    bad = error_from_body(
        "anthropic", 400, anthropic_error("invalid_request_error", "max_tokens: too large"), {}
    )
    assert (bad.status, bad.type, bad.retryable) == (400, "invalid_request_error", False)
    assert bad.message.startswith("max_tokens: too large")
    # llama-server answers errors in OpenAI's shape; a proxy may answer in HTML
    oai = json.dumps({"error": {"code": 400, "message": "bad", "type": "invalid_request_error"}})
    assert error_from_body("local", 400, oai.encode(), {}).message.startswith("bad")
    html = error_from_body("anthropic", 502, b"<html>Bad Gateway</html>", {"retry-after-ms": "250"})
    assert (html.status, html.retryable, html.retry_after_s) == (502, True, 0.25)


def test_vendor_headers_are_relayed_in_openai_names() -> None:
    headers = relay_headers(
        [
            ("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-tokens-limit", "80000"),
            ("content-type", "text/event-stream"),
        ]
    )
    assert headers == {
        "x-request-id": "req_018EeWyXxfu5pfWkrYcMdjWG",
        "x-ratelimit-remaining-requests": "49",
        "x-ratelimit-limit-tokens": "80000",
    }


def test_sse_comments_and_multiline_data_are_read_as_the_spec_says() -> None:
    # llama-server keeps idle streams alive with `:` comment lines
    lines = [
        ":",
        "",
        "event: ping",
        "data: {}",
        "",
        ": keep-alive",
        "data: a",
        "data:b",
        "",
        "data: c",
    ]
    # an event the stream cut before its blank line is never dispatched
    assert list(sse_events(lines)) == [("ping", "{}"), ("message", "a\nb")]
