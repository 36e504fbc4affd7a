"""The Responses API on the default model, with the official `openai` SDK as the client.

Every response, stream event and error is validated against the official schemas
(tests/fixtures/openai_responses_schemas.json). The model is tiny: the tests assert
structure, grammar guarantees and protocol, not what the model says.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import MODEL, Server
from tests.schema import validate_event, validate_responses

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
SHORT_JSON = {
    "type": "json_schema",
    "name": "answer",
    "schema": {
        "type": "object",
        "properties": {"a": {"type": "boolean"}},
        "required": ["a"],
        "additionalProperties": False,
    },
    "strict": True,
}


def raw_create(client: openai.OpenAI, **kwargs: Any) -> dict[str, Any]:
    """`responses.create` through the SDK, returning the JSON as sent (validated)."""
    kwargs.setdefault("model", MODEL)
    body = client.responses.with_raw_response.create(**kwargs).http_response.json()
    validate_responses("Response", body)
    return body


def sse_events(http: httpx.Client, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The events of a Responses stream, each checked against its schema and its `event:`."""
    events: list[dict[str, Any]] = []
    with http.stream(method, path, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event["type"] == name
                validate_event(event)
                events.append(event)
    return events


def check_sequence(events: list[dict[str, Any]], first: int = 0) -> None:
    assert [e["sequence_number"] for e in events] == list(range(first, first + len(events)))


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    validate_responses("ErrorResponse", body)
    return body["error"]


def test_create_text(client: openai.OpenAI) -> None:
    body = raw_create(client, input="Say hello.", max_output_tokens=16, temperature=0)
    assert body["output"][0]["content"][0]["logprobs"] == []  # not asked for
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["status"] in ("completed", "incomplete")
    assert body["model"] == MODEL and body["store"] is True
    message = body["output"][0]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert output_text(body)
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    if body["status"] == "incomplete":
        assert body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_instructions_and_message_items(client: openai.OpenAI) -> None:
    body = raw_create(
        client,
        instructions="Answer in one word.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Name a color."}]},
            {"role": "assistant", "content": "Blue."},
            {"type": "message", "role": "user", "content": "Another one?"},
        ],
        max_output_tokens=16,
        metadata={"run": "items"},
        user="user-1",
        safety_identifier="s-1",
        prompt_cache_key="k-1",
        service_tier="auto",
        truncation="auto",
        top_p=0.9,
    )
    assert body["instructions"] == "Answer in one word."
    assert body["metadata"] == {"run": "items"} and body["user"] == "user-1"
    assert body["truncation"] == "auto" and body["top_p"] == 0.9


def test_stream_events(server: Server, http: httpx.Client) -> None:
    events = sse_events(
        http,
        "POST",
        "/v1/responses",
        json={"model": MODEL, "input": "Count to five.", "max_output_tokens": 16, "stream": True},
    )
    check_sequence(events)
    kinds = [e["type"] for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    final = events[-1]["response"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert deltas == done["text"] == output_text(final)
    assert events[0]["response"]["status"] == "in_progress" and "usage" not in events[0]["response"]
    assert final["usage"]["output_tokens"] > 0
    stored = http.get(f"/v1/responses/{final['id']}").json()
    assert stored == final


def test_sdk_stream_helper(client: openai.OpenAI) -> None:
    # a short JSON answer: the helper needs `response.completed`, not `incomplete`
    with client.responses.stream(
        model=MODEL, input="Yes or no?", text={"format": SHORT_JSON}, max_output_tokens=32
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.status == "completed" and isinstance(json.loads(final.output_text)["a"], bool)


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    name: str = Field(max_length=10)


def test_parse_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model=MODEL,
        input="Describe a pet as JSON.",
        text_format=Pet,
        max_output_tokens=40,
        temperature=0,
    )
    assert parsed.status == "completed"
    assert isinstance(parsed.output_parsed, Pet)
    stored = client.responses.retrieve(parsed.id)
    assert stored.text.format.type == "json_schema"


def test_json_object(client: openai.OpenAI) -> None:
    body = raw_create(
        client,
        input="Give a JSON object with a key a.",
        text={"format": {"type": "json_object"}},
        max_output_tokens=24,
        temperature=0,
    )
    if body["status"] == "completed":
        assert isinstance(json.loads(output_text(body)), dict)
    assert body["text"]["format"] == {"type": "json_object"}


def test_function_tool_round_trip(client: openai.OpenAI) -> None:
    first = raw_create(
        client,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=48,
        temperature=0,
    )
    calls = [item for item in first["output"] if item["type"] == "function_call"]
    assert len(calls) == 1 and first["status"] == "completed"
    call = calls[0]
    assert call["name"] == "get_weather" and call["status"] == "completed"
    assert isinstance(json.loads(call["arguments"])["city"], str)
    assert first["tools"][0]["strict"] is True
    second = raw_create(
        client,
        previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}],
        tools=[WEATHER],
        max_output_tokens=16,
    )
    assert second["previous_response_id"] == first["id"]
    assert second["output"] and second["status"] in ("completed", "incomplete")
    # the chain is the conversation: the first turn's prompt is in the engine's prefix cache
    cached = second["usage"]["input_tokens_details"]["cached_tokens"]
    assert 0 < cached < second["usage"]["input_tokens"]
    items = client.responses.input_items.list(second["id"], order="asc")
    kinds = [item.type for item in items.data]
    assert kinds == ["message", "function_call", "function_call_output"]


def test_stream_function_call(http: httpx.Client) -> None:
    events = sse_events(
        http,
        "POST",
        "/v1/responses",
        json={
            "model": MODEL,
            "input": "Weather in Rome?",
            "tools": [WEATHER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "max_output_tokens": 48,
            "stream": True,
        },
    )
    check_sequence(events)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == done["arguments"] and done["name"] == "get_weather"
    # what the grammar guarantees (the tiny model may well name no city: "")
    city = json.loads(done["arguments"])["city"]
    assert isinstance(city, str) and len(city) <= 20
    assert kinds[-1] == "response.completed"


def test_logprobs(client: openai.OpenAI) -> None:
    body = raw_create(
        client,
        input="Hi",
        include=["message.output_text.logprobs"],
        top_logprobs=2,
        max_output_tokens=16,
    )
    part = body["output"][0]["content"][0]
    assert part["logprobs"] and all(len(lp["top_logprobs"]) == 2 for lp in part["logprobs"])
    assert body["top_logprobs"] == 2


def test_retrieve_input_items_delete(client: openai.OpenAI) -> None:
    made = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "One"},
            {"role": "user", "content": "Two"},
        ],
        max_output_tokens=16,
    )
    got = client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    page = client.responses.input_items.list(made.id)  # newest first, as the API lists them
    body = page.model_dump(mode="json")
    texts = [item.content[0].text for item in page.data]
    assert texts == ["Two", "One", "Be brief."]
    one = client.responses.input_items.list(made.id, limit=1, order="asc")
    assert one.has_more and one.data[0].content[0].text == "Be brief."
    rest = client.responses.input_items.list(made.id, limit=5, order="asc", after=one.last_id)
    assert [item.content[0].text for item in rest.data] == ["One", "Two"] and not rest.has_more
    raw = client.get(f"/responses/{made.id}/input_items", cast_to=httpx.Response).json()
    validate_responses("ResponseItemList", raw)
    assert body["first_id"] == raw["first_id"]
    deleted = client.delete(f"/responses/{made.id}", cast_to=httpx.Response).json()
    assert deleted == {"id": made.id, "object": "response", "deleted": True}
    for call in (
        lambda: client.responses.retrieve(made.id),
        lambda: client.responses.delete(made.id),
        lambda: client.responses.input_items.list(made.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert made.id in error_of(caught.value)["message"]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input="Hi", store=False, max_output_tokens=16)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="Hi", previous_response_id=made.id)
    assert error_of(caught.value)["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"input": "x"}, 400, "model", "missing_required_parameter"),
        ({"model": MODEL}, 400, "input", "missing_required_parameter"),
        ({"model": MODEL, "input": "x", "foo": 1}, 400, "foo", "unknown_parameter"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 8}, 400, "max_output_tokens", None),
        ({"model": MODEL, "input": "x", "temperature": "hot"}, 400, "temperature", "invalid_type"),
        ({"model": MODEL, "input": 3}, 400, "input", "invalid_type"),
        (
            {"model": MODEL, "input": [{"type": "item_reference", "id": "x"}]},
            400,
            "input[0].type",
            "unsupported_value",
        ),
        (
            {"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]},
            400,
            "tools[0].type",
            "unsupported_value",
        ),
        ({"model": MODEL, "input": "x", "prompt": {"id": "p"}}, 400, "prompt", None),
        ({"model": MODEL, "input": "x", "conversation": "c"}, 400, "conversation", None),
        (
            {"model": MODEL, "input": "x", "reasoning": {"summary": "auto"}},
            400,
            "reasoning.summary",
            "unsupported_parameter",
        ),
        (
            {"model": MODEL, "input": "x", "reasoning": {"effort": "high"}},
            400,
            "reasoning.effort",
            "unsupported_value",
        ),
        (
            {"model": MODEL, "input": "x", "text": {"verbosity": "low"}},
            400,
            "text.verbosity",
            "unsupported_parameter",
        ),
        (
            {"model": MODEL, "input": "x", "tool_choice": {"type": "function", "name": "nope"}},
            400,
            "tool_choice",
            None,
        ),
        (
            {
                "model": MODEL,
                "input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}],
            },
            400,
            "input",
            None,
        ),
        (
            {
                "model": MODEL,
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
                    }
                ],
            },
            400,
            "input",
            None,
        ),
        (
            {"model": MODEL, "input": "x", "background": True, "store": False},
            400,
            "background",
            None,
        ),
        ({"model": "nope", "input": "x"}, 404, None, "model_not_found"),
        ({"model": MODEL, "previous_response_id": "resp_x"}, 404, "previous_response_id", None),
    ],
)
def test_errors(
    http: httpx.Client, body: dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    response = http.post("/v1/responses", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    validate_responses("ErrorResponse", error)
    assert error["error"]["param"] == param
    if code is not None:
        assert error["error"]["code"] == code


def test_truncation(http: httpx.Client) -> None:
    """Over the context: 400 by default; `auto` drops the oldest turns until it fits."""
    long = [{"role": "user", "content": "word " * 12000}, {"role": "user", "content": "Hi"}]
    body = {"model": MODEL, "input": long, "max_output_tokens": 16}
    refused = http.post("/v1/responses", json=body)
    assert refused.status_code == 400
    error = refused.json()
    validate_responses("ErrorResponse", error)
    assert error["error"]["code"] == "context_length_exceeded"
    assert error["error"]["param"] == "input"
    answered = http.post("/v1/responses", json={**body, "truncation": "auto"})
    assert answered.status_code == 200, answered.text
    response = answered.json()
    validate_responses("Response", response)
    assert response["usage"]["input_tokens"] < 100 and response["truncation"] == "auto"


def test_not_json(http: httpx.Client) -> None:
    response = http.post("/v1/responses", content=b"{nope")
    assert response.status_code == 400
    validate_responses("ErrorResponse", response.json())


def test_background_then_cancel(client: openai.OpenAI) -> None:
    made = client.responses.create(
        model=MODEL,
        input="Write a long story about the sea.",
        background=True,
        max_output_tokens=2000,
    )
    assert made.background is True and made.status in ("queued", "in_progress")
    cancelled = client.responses.cancel(made.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(made.id).status == "cancelled"
    again = client.responses.cancel(made.id)  # idempotent
    assert again.status == "cancelled"
    plain = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)


def test_background_completes(client: openai.OpenAI) -> None:
    made = client.responses.create(model=MODEL, input="Hi", background=True, max_output_tokens=16)
    deadline = time.monotonic() + 60
    while made.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        made = client.responses.retrieve(made.id)
    assert made.status in ("completed", "incomplete") and made.output_text
    assert made.usage is not None and made.usage.output_tokens > 0


def test_background_stream_resumes(http: httpx.Client, client: openai.OpenAI) -> None:
    body = {"model": MODEL, "input": "Tell a story.", "max_output_tokens": 16}
    body.update(background=True, stream=True)
    seen: list[dict[str, Any]] = []
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[len("data: ") :]))
                if len(seen) == 4:
                    break  # the client leaves; the response goes on
    check_sequence(seen)
    rid = seen[0]["response"]["id"]
    after = seen[-1]["sequence_number"]
    rest = sse_events(http, "GET", f"/v1/responses/{rid}?stream=true&starting_after={after}")
    check_sequence(rest, after + 1)
    assert rest[-1]["type"] in ("response.completed", "response.incomplete")
    assert client.responses.retrieve(rid).status == rest[-1]["response"]["status"]
    # once finished, the same events replay from the store: the SDK's own resume too
    resumed = list(client.responses.retrieve(rid, stream=True, starting_after=after))
    assert [e.sequence_number for e in resumed] == [e["sequence_number"] for e in rest]
    replayed = sse_events(http, "GET", f"/v1/responses/{rid}?stream=true")
    assert replayed[: len(seen)] == seen and replayed[len(seen) :] == rest
