"""Structured outputs and tool calls through a live server, with the official SDK.

Every answer here comes from the real model under a grammar: whatever it writes,
the JSON validates and the tool calls are well formed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from tests.conftest import MODEL, Server
from tests.test_chat import create, stream
from tests.test_constraints import top_schemas

ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": WEATHER_PARAMS,
        "strict": True,
    },
}
LEGACY_WEATHER = {k: v for k, v in WEATHER["function"].items() if k != "strict"}  # type: ignore[union-attr]
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "description": "The current time in a city."},
}
TICKET = {
    "type": "custom",
    "custom": {
        "name": "open_ticket",
        "description": "Open a support ticket.",
        "format": {
            "type": "grammar",
            "grammar": {"syntax": "regex", "definition": r"[A-Z]{3}-\d{2,4}: [a-z ]{1,20}"},
        },
    },
}
SQL = {
    "type": "custom",
    "custom": {
        "name": "query",
        "description": "Run a SQL query.",
        "format": {
            "type": "grammar",
            "grammar": {
                "syntax": "lark",
                "definition": 'start: "SELECT " COLS " FROM " NAME\n'
                'COLS: NAME (", " NAME)*\nNAME: /[a-z_]{1,12}/\n',
            },
        },
    },
}
RICH = {
    "$defs": {
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "home": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
        "score": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]},
        "extra": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "maxProperties": 1,
        },
    },
    "required": ["name", "age", "role", "home", "tags", "score", "extra"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str = Field(max_length=20)
    age: int = Field(ge=0, le=120)


class Weather(BaseModel):
    city: str = Field(max_length=24)
    unit: Literal["celsius", "fahrenheit"]


def schema_format(schema: Any, strict: bool = True, name: str = "answer") -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict},
    }


# -- response_format ---------------------------------------------------------------------


def test_parse_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person: Bob, 42 years old."}],
        response_format=Person,
        temperature=0,
        max_tokens=60,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person)
    assert choice.message.parsed == Person.model_validate_json(choice.message.content or "")


def test_parse_streamed(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=Person,
        seed=5,
        max_tokens=60,
    ) as events:
        final = events.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)


def test_json_object(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=[{"role": "user", "content": "Describe a cat in JSON."}],
        response_format={"type": "json_object"},
        n=2,
        seed=11,
        max_tokens=60,
    )
    for choice in body["choices"]:
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
        else:
            assert choice["message"]["content"].startswith("{")


@pytest.mark.parametrize("strict", [True, False])
def test_rich_schema_always_validates(client: openai.OpenAI, strict: bool) -> None:
    body = create(
        client,
        messages=[{"role": "user", "content": "Make up a user record."}],
        response_format=schema_format(RICH, strict),
        n=3,
        seed=21 if strict else 22,
        max_tokens=200,  # unbounded numbers: ~4% of sampled records run past 200 tokens
    )
    finished = 0
    for choice in body["choices"]:
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(choice["message"]["content"]), RICH)
            finished += 1
    assert finished >= 1


def test_max_tokens_cuts_a_structured_answer(client: openai.OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Invent a person."}],
            response_format=Person,
            max_tokens=3,
        )


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "object", "properties": {"a": {"type": "wat"}}}, "properties/a/type"),
        ({"type": "string", "pattern": "(?<=x)y"}, "look-behind"),
        ({"type": "string", "format": "semver"}, "semver"),
        ({"$ref": "#/$defs/nowhere"}, "nowhere"),
    ],
)
def test_unusable_schema_is_a_400(client: openai.OpenAI, schema: Any, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            response_format=schema_format(schema, name="thing"),  # type: ignore[arg-type]
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "response_format"
    assert error["message"].startswith("Invalid schema for response_format 'thing': ")
    assert needle in error["message"]


def test_logprobs_under_a_grammar(client: openai.OpenAI) -> None:
    body = create(
        client,
        response_format={"type": "json_object"},
        logprobs=True,
        top_logprobs=3,
        temperature=0,
        max_tokens=8,
    )
    entries = body["choices"][0]["logprobs"]["content"]
    assert entries[0]["token"] == "{"
    # the model's own distribution: "{" is forced, yet not certain, and rivals show
    assert entries[0]["logprob"] < 0 or any(t["token"] != "{" for t in entries[0]["top_logprobs"])
    assert "".join(e["token"] for e in entries) == body["choices"][0]["message"]["content"]


# -- tools -------------------------------------------------------------------------------


def test_required_tool_call(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=ASK_WEATHER,
        tools=[WEATHER, CLOCK],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    choice = body["choices"][0]
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    if choice["finish_reason"] == "length":  # greedy decoding may repeat calls; the last is cut
        calls = calls[:-1]
    else:
        assert choice["finish_reason"] == "tool_calls"
    assert calls
    for call in calls:
        assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call["id"])
        name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
        if name == "get_weather":
            jsonschema.validate(arguments, WEATHER_PARAMS)
        else:
            assert name == "get_time" and isinstance(arguments, dict)


def test_named_tool_and_pydantic_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=ASK_WEATHER,
        tools=[openai.pydantic_function_tool(Weather)],
        tool_choice={"type": "function", "function": {"name": "Weather"}},
        seed=3,
        max_tokens=60,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "Weather"
    assert isinstance(call.function.parsed_arguments, Weather)


def test_allowed_tools_and_parallel_false(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=ASK_WEATHER,
        tools=[WEATHER, CLOCK],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [{"type": "function", "function": {"name": "get_time"}}],
            },
        },
        parallel_tool_calls=False,
        n=2,
        seed=8,
        max_tokens=40,
    )
    for choice in body["choices"]:
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_time"
        assert choice["finish_reason"] == "tool_calls"


def test_parallel_calls_are_allowed(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice="required",
        n=3,
        seed=5,
        temperature=1.2,
        max_tokens=80,
    )
    calls = []
    for choice in body["choices"]:
        assert choice["finish_reason"] in ("tool_calls", "length")
        if choice["finish_reason"] == "tool_calls":
            calls.append(len(choice["message"]["tool_calls"]))
            for call in choice["message"]["tool_calls"]:
                jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER_PARAMS)
    # whether the model makes a second call is its choice; that the grammar allows one is
    # tests/test_constraints.py's (a call then a newline may be followed by another call)
    assert calls and min(calls) >= 1, calls


def test_tool_choice_none(client: openai.OpenAI) -> None:
    body = create(
        client, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="none", max_tokens=20, seed=1
    )
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert "tool_calls" not in body["choices"][0]["message"]
    assert "<tool_call" not in body["choices"][0]["message"]["content"]


def check_auto_choice(choice: dict[str, Any]) -> str:
    """What a client of tool_choice auto relies on; returns "call" or "text"."""
    message = choice["message"]
    assert "<tool_call" not in (message["content"] or "")  # the call syntax never leaks
    calls = message.get("tool_calls") or []
    if choice["finish_reason"] == "length":  # cut: a call may be cut short too
        return "call" if calls else "text"
    assert choice["finish_reason"] == ("tool_calls" if calls else "stop")
    for call in calls:
        arguments = json.loads(call["function"]["arguments"])
        if call["function"]["name"] == "get_weather":
            jsonschema.validate(arguments, WEATHER_PARAMS)
        else:
            assert call["function"]["name"] == "get_time" and arguments == {}
    if not calls:
        assert message["content"].strip()
    return "call" if calls else "text"


def test_tool_choice_auto_answers_text_or_valid_calls(client: openai.OpenAI) -> None:
    # SmolLM2 mostly answers in text under auto (8 of 8 here, seed 2); that a call, once
    # begun, must be a valid one is the grammar's part (test_auto_tools_text_or_call).
    outcomes = {}
    for name, messages in (
        ("weather", ASK_WEATHER),
        ("haiku", [{"role": "user", "content": "Write a haiku about autumn leaves."}]),
    ):
        body = create(client, messages=messages, tools=[WEATHER, CLOCK], n=4, seed=2, max_tokens=60)
        outcomes[name] = [check_auto_choice(choice) for choice in body["choices"]]
    assert "text" in outcomes["haiku"], outcomes  # auto is not "required"


def test_custom_tools(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=[{"role": "user", "content": "My printer is broken, open a ticket."}],
        tools=[TICKET, SQL, WEATHER],
        tool_choice={"type": "custom", "custom": {"name": "open_ticket"}},
        seed=4,
        max_tokens=40,
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "custom" and call["custom"]["name"] == "open_ticket"
    assert re.fullmatch(r"[A-Z]{3}-\d{2,4}: [a-z ]{1,20}", call["custom"]["input"])
    body = create(
        client,
        messages=[{"role": "user", "content": "List the names of all users."}],
        tools=[TICKET, SQL],
        tool_choice={"type": "custom", "custom": {"name": "query"}},
        temperature=0,
        max_tokens=40,
    )
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert re.fullmatch(r"SELECT [a-z_]+(, [a-z_]+)* FROM [a-z_]+", call["custom"]["input"])


def test_legacy_functions(client: openai.OpenAI) -> None:
    body = create(
        client,
        messages=ASK_WEATHER,
        functions=[LEGACY_WEATHER],
        function_call={"name": "get_weather"},
        temperature=0,
        max_tokens=60,
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "function_call"
    call = choice["message"]["function_call"]
    assert call["name"] == "get_weather"
    jsonschema.validate(json.loads(call["arguments"]), WEATHER_PARAMS)
    assert "tool_calls" not in choice["message"] or not choice["message"]["tool_calls"]


def test_multi_turn_with_tool_results(client: openai.OpenAI) -> None:
    first = create(
        client, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required", temperature=0
    )
    message = first["choices"][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 18}'}
        for call in message["tool_calls"]
    ]
    history = [*ASK_WEATHER, message, *results]
    second = create(client, messages=history, tools=[WEATHER], temperature=0, max_tokens=30)
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert second["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    legacy = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": "{}"},
        },
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]
    body = create(client, messages=legacy, functions=[LEGACY_WEATHER], max_tokens=10, temperature=0)
    assert body["choices"][0]["finish_reason"] in ("stop", "length", "function_call")


def test_streamed_tool_calls_equal_the_answer(steady: Server) -> None:
    # compares two runs token for token: the server whose runs repeat (conftest.steady)
    client = steady.client()
    kwargs: dict[str, Any] = {
        "messages": ASK_WEATHER,
        "tools": [WEATHER, CLOCK],
        "tool_choice": "required",
        "seed": 9,
        "temperature": 1.0,
        "max_tokens": 80,
    }
    whole = create(client, **kwargs)["choices"][0]
    chunks = stream(client, **kwargs)
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            finish = choice["finish_reason"] or finish
            for delta in choice["delta"].get("tool_calls") or []:
                if delta["index"] not in calls:
                    assert delta["id"].startswith("call_") and delta["type"] == "function"
                    assert delta["function"]["name"]
                    calls[delta["index"]] = {"name": delta["function"]["name"], "arguments": ""}
                else:
                    assert "id" not in delta and "name" not in delta["function"]
                calls[delta["index"]]["arguments"] += delta["function"]["arguments"]
    assert finish == whole["finish_reason"]
    expected = [
        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in whole["message"]["tool_calls"] or []
    ]
    assert [calls[i] for i in sorted(calls)] == expected


def test_tool_choice_needs_tools(client: openai.OpenAI) -> None:
    for extra in ({"tool_choice": "required"}, {"parallel_tool_calls": False}):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=ASK_WEATHER, **extra)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL,
            messages=ASK_WEATHER,
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


# -- property-based ----------------------------------------------------------------------


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schema=top_schemas(), seed=st.integers(0, 2**31 - 1))
def test_generated_schemas_via_the_api(
    client: openai.OpenAI, schema: dict[str, Any], seed: int
) -> None:
    body = create(
        client,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format=schema_format(schema),
        n=2,
        seed=seed,
        max_tokens=48,
    )
    for choice in body["choices"]:
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(choice["message"]["content"]), schema)
        else:
            assert choice["finish_reason"] == "length"
