"""The Anthropic Messages API front door: the official `anthropic` SDK against a live chatd.

Every answer, stream event and error is validated against the documented shapes
(tests/anthropic_schema.py); the raw wire is read with httpx where the SDK would hide it.
The gateway's half (a chatd whose upstream is another chatd) is in tests/test_messages_gateway.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import pydantic
import pytest

from tests import anthropic_schema as shapes
from tests.conftest import MODEL, Server

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
HI = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
TIME = {
    "name": "get_time",
    "description": "The time now in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event."""
    kind, data = "", []
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield kind, json.loads("\n".join(data))
            kind, data = "", []


def wire_stream(
    server: Server, body: dict[str, Any], key: str = "unused"
) -> list[tuple[str, dict[str, Any]]]:
    """A streamed answer as sent: every event validated, the order checked."""
    with httpx.stream(
        "POST",
        server.url + "/v1/messages",
        json={**body, "stream": True},
        headers={"anthropic-version": "2023-06-01", "x-api-key": key},
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    for kind, data in events:
        shapes.event(kind, data)
    check_order([kind for kind, _ in events], events)
    return events


def check_order(kinds: list[str], events: list[tuple[str, dict[str, Any]]]) -> None:
    """message_start, then blocks (start, deltas, stop; indexes 0, 1, ...), one message_delta,
    message_stop last; pings anywhere after message_start."""
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert kinds.count("message_delta") == 1 and kinds[-2] == "message_delta", kinds
    open_index = None
    next_index = 0
    for kind, data in events[1:-2]:
        if kind == "content_block_start":
            assert open_index is None and data["index"] == next_index, kinds
            open_index, next_index = data["index"], next_index + 1
        elif kind in ("content_block_delta", "content_block_stop"):
            assert data["index"] == open_index, kinds
            if kind == "content_block_stop":
                open_index = None
        else:
            assert kind == "ping", kinds
    assert open_index is None, "a block was never stopped"


def blocks_of(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The content the stream built, as the non-streamed Message would hold it."""
    blocks: list[dict[str, Any]] = []
    for kind, data in events:
        if kind == "content_block_start":
            blocks.append({**data["content_block"], "_json": ""})
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                blocks[data["index"]]["_json"] += delta["partial_json"]
    for block in blocks:
        raw = block.pop("_json")
        if block["type"] == "tool_use" and raw:
            block["input"] = json.loads(raw)
    return blocks


def create_raw(claude: anthropic.Anthropic, **kwargs: Any) -> tuple[dict[str, Any], httpx.Headers]:
    """A Message as sent (validated) and its headers."""
    raw = claude.messages.with_raw_response.create(**kwargs)
    body = raw.http_response.json()
    shapes.message(body)
    return body, raw.http_response.headers


def check_error(exc: anthropic.APIStatusError, status: int, kind: str) -> str:
    assert exc.status_code == status
    assert isinstance(exc.body, dict)
    parsed = shapes.error(exc.body, status)
    assert parsed.error.type == kind
    assert exc.response.headers["request-id"] == parsed.request_id
    return parsed.error.message


# -- the shapes themselves ---------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.sse")), ids=lambda p: p.stem)
def test_the_shapes_accept_what_the_real_api_sends(path: Path) -> None:
    events = list(sse_events(iter(path.read_text().splitlines())))
    assert events
    for kind, data in events:
        shapes.event(kind, data)


def test_the_shapes_reject_what_the_docs_do_not_allow() -> None:
    good = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ""}}
    shapes.event("content_block_delta", good)
    for bad in (
        {**good, "extra": 1},
        {**good, "index": "0"},
        {**good, "delta": {"type": "text_delta"}},
        {"type": "message_delta", "delta": {"stop_reason": "done", "stop_sequence": None}},
    ):
        with pytest.raises(ValueError):
            shapes.event(bad["type"], bad)


# -- text ----------------------------------------------------------------------------------


def test_create_answers_a_message(claude: anthropic.Anthropic) -> None:
    body, headers = create_raw(claude, model=MODEL, max_tokens=16, messages=HI)
    assert body["model"] == MODEL
    assert body["stop_reason"] in ("end_turn", "max_tokens")
    assert body["stop_sequence"] is None
    [block] = body["content"]
    assert block["type"] == "text" and block["text"]
    usage = body["usage"]
    assert usage["output_tokens"] > 0
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] > 5
    assert headers["request-id"].startswith("req_")
    message = claude.messages.create(model=MODEL, max_tokens=4, messages=HI)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 4


def test_system_as_string_and_as_text_blocks(claude: anthropic.Anthropic) -> None:
    system = "You are a pirate. Answer in one short sentence."
    short = claude.messages.count_tokens(model=MODEL, messages=HI, system="Be brief.")
    as_string = claude.messages.count_tokens(model=MODEL, messages=HI, system=system)
    as_blocks = claude.messages.count_tokens(
        model=MODEL,
        messages=HI,
        system=[
            {"type": "text", "text": "You are a pirate.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in one short sentence."},
        ],
    )
    assert as_string.input_tokens > short.input_tokens + 5
    assert abs(as_blocks.input_tokens - as_string.input_tokens) <= 1  # " " vs "\n" between
    # the SDK no longer has the sampling fields; the Messages API (and chatd) still takes them
    sampling = {"temperature": 0.5, "top_p": 0.9, "top_k": 20}
    body, _ = create_raw(
        claude, model=MODEL, max_tokens=8, messages=HI, system=system, extra_body=sampling
    )
    assert body["content"][0]["text"]


def test_stream_sends_the_documented_event_sequence(server: Server) -> None:
    events = wire_stream(server, {"model": MODEL, "max_tokens": 12, "messages": HI})
    kinds = [kind for kind, _ in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 5  # the prompt, counted before the answer
    [block] = blocks_of(events)
    assert block["type"] == "text" and block["text"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert 0 < delta["usage"]["output_tokens"] <= 12


def test_sdk_stream_text(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=12, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.id.startswith("msg_") and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_stop_sequences_name_the_one_matched(claude: anthropic.Anthropic, server: Server) -> None:
    ask = [{"role": "user", "content": "Describe the sea in three sentences."}]
    stops = ["zqzqz", "e"]
    body, _ = create_raw(claude, model=MODEL, max_tokens=32, messages=ask, stop_sequences=stops)
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "e")
    assert "e" not in "".join(b["text"] for b in body["content"])
    events = wire_stream(
        server, {"model": MODEL, "max_tokens": 32, "messages": ask, "stop_sequences": stops}
    )
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "e"}
    assert all("e" not in b.get("text", "") for b in blocks_of(events))


# -- tools ---------------------------------------------------------------------------------


def tool_uses(message: anthropic.types.Message) -> list[anthropic.types.ToolUseBlock]:
    return [block for block in message.content if block.type == "tool_use"]


def test_tool_choice_any_streams_one_valid_input(server: Server) -> None:
    """On the wire: a tool_use block opens with input {}, then JSON deltas that join to an
    input valid against the tool's schema (a non-streamed call: tests/test_messages_gateway.py)."""
    ask = {
        "model": MODEL,
        "max_tokens": 64,
        "temperature": 0,  # greedy: the call ends well within max_tokens
        "messages": ASK_WEATHER,
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    events = wire_stream(server, ask)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    [call] = [block for block in blocks_of(events) if block["type"] == "tool_use"]
    assert call["id"].startswith("toolu_")
    assert call["id"]
    tool = {"get_weather": WEATHER, "get_time": TIME}[call["name"]]
    jsonschema.validate(call["input"], tool["input_schema"])


def test_tool_round_trip_streamed(claude: anthropic.Anthropic) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": ASK_WEATHER,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    greedy = {"temperature": 0}  # the call ends well within max_tokens
    with claude.messages.stream(**ask, extra_body=greedy) as stream:
        partial = [e.partial_json for e in stream if e.type == "input_json"]
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [call] = tool_uses(first)
    assert call.name == "get_weather" and call.id
    assert json.loads("".join(partial)) == call.input
    jsonschema.validate(call.input, WEATHER["input_schema"])
    # tool_result -> an answer in text
    turns = [
        *ASK_WEATHER,
        {"role": "assistant", "content": first.content},  # the SDK's own blocks, as sent back
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C."},
                {"type": "text", "text": "Answer in one sentence."},
            ],
        },
    ]
    with claude.messages.stream(
        model=MODEL, max_tokens=24, messages=turns, tools=[WEATHER]
    ) as stream:
        text = "".join(stream.text_stream)
        answer = stream.get_final_message()
    assert text and answer.content[0].type == "text"
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_tool_choice_none_answers_in_text(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=16,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice={"type": "none"},
    )
    assert not tool_uses(message) and message.stop_reason in ("end_turn", "max_tokens")


# -- structured outputs --------------------------------------------------------------------


class Forecast(pydantic.BaseModel):
    sunny: bool
    degrees: int


def test_parse_with_a_pydantic_model(claude: anthropic.Anthropic) -> None:
    message = claude.messages.parse(
        model=MODEL,
        max_tokens=32,
        messages=[{"role": "user", "content": "Is it sunny in Paris, and how warm?"}],
        output_format=Forecast,
        extra_body={"temperature": 0},  # greedy: the object closes well within max_tokens
    )
    assert message.stop_reason == "end_turn"
    assert isinstance(message.parsed_output, Forecast)


# -- count_tokens --------------------------------------------------------------------------


def test_count_tokens_is_the_prompt_the_model_reads(claude: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "Count the tokens of this very prompt, please."}]
    counted = claude.messages.count_tokens(model=MODEL, messages=ask)
    shapes.TokenCount.model_validate(counted.model_dump())
    usage = claude.messages.create(model=MODEL, max_tokens=1, messages=ask).usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    with_tools = claude.messages.count_tokens(model=MODEL, messages=ask, tools=[WEATHER])
    assert with_tools.input_tokens > counted.input_tokens + 20  # the tools' prompt section


# -- errors --------------------------------------------------------------------------------


def test_missing_max_tokens(server: Server) -> None:
    response = httpx.post(server.url + "/v1/messages", json={"model": MODEL, "messages": HI})
    assert response.status_code == 400
    parsed = shapes.error(response.json(), 400)
    assert parsed.error.type == "invalid_request_error" and "max_tokens" in parsed.error.message


def test_sdk_errors(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="claude-nonesuch", max_tokens=8, messages=HI)
    assert "claude-nonesuch" in check_error(missing.value, 404, "not_found_error")
    video = [{"role": "user", "content": [{"type": "video", "url": "x"}]}]
    with pytest.raises(anthropic.BadRequestError) as bad_block:
        claude.messages.create(model=MODEL, max_tokens=8, messages=video)  # type: ignore[arg-type]
    assert "messages[0].content[0].type" in check_error(
        bad_block.value, 400, "invalid_request_error"
    )
    with pytest.raises(anthropic.BadRequestError) as thinking:
        claude.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=HI,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    assert check_error(thinking.value, 400, "invalid_request_error").startswith("thinking:")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    with pytest.raises(anthropic.BadRequestError) as image_on_text_model:
        claude.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [image]}]
        )
    assert "image" in check_error(image_on_text_model.value, 400, "invalid_request_error")
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        claude.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=HI,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert "tools[0].type" in check_error(server_tool.value, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"model": MODEL, "max_tokens": 0, "messages": HI}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 8, "messages": HI, "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "max_tokens": 8, "messages": HI, "container": "c"}, "container"),
        (
            {"model": MODEL, "max_tokens": 8, "messages": HI, "output_config": {"effort": "max"}},
            "output_config.effort",
        ),
        ({"model": MODEL, "max_tokens": 8, "messages": HI, "n": 2}, "n"),
        ({"model": MODEL, "max_tokens": 8, "messages": []}, "messages"),
        (
            {
                "model": MODEL,
                "max_tokens": 8,
                "messages": [*HI, {"role": "assistant", "content": "Hi"}],
            },
            "messages[1]",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 8,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}
                ],
            },
            "tool_use_id",
        ),
        (
            {"model": MODEL, "max_tokens": 8, "messages": HI, "tool_choice": {"type": "any"}},
            "tool_choice",
        ),
        (
            {"model": MODEL, "max_tokens": 8, "messages": HI, "stop_sequences": ["  "]},
            "stop_sequences",
        ),
    ],
)
def test_bad_requests_name_the_field(http: httpx.Client, body: dict[str, Any], where: str) -> None:
    response = http.post("/v1/messages", json=body)
    parsed = shapes.error(response.json(), response.status_code)
    assert (response.status_code, parsed.error.type) == (400, "invalid_request_error")
    assert where in parsed.error.message


def test_errors_outside_the_endpoint_have_the_shape_too(http: httpx.Client) -> None:
    not_json = http.post(
        "/v1/messages", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert shapes.error(not_json.json(), 400).error.message == "The request body is not valid JSON."
    wrong_url = http.post("/v1/messages/batches", json={})
    assert shapes.error(wrong_url.json(), 404).error.type == "not_found_error"
    wrong_method = http.get("/v1/messages")
    assert shapes.error(wrong_method.json(), 405).error.type == "invalid_request_error"
    version = http.post(
        "/v1/messages",
        json={"model": MODEL, "max_tokens": 8, "messages": HI},
        headers={"anthropic-version": "latest"},
    )
    assert "anthropic-version" in shapes.error(version.json(), 400).error.message
