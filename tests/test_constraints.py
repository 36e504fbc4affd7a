"""Constrained decoding on the real SmolLM2 vocabulary and model.

Unit tests drive the grammar with known text; end-to-end tests decode a few
dozen tokens with llama.cpp, the mask applied and NumPy sampling, and check that
every finished output validates (jsonschema), for many generated schemas and seeds.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatd.api.schemas import response_format_of
from chatd.backend import (
    BackendError,
    Event,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from chatd.engine.constraints import ConstrainedChoice, grammars_for, plan_constrained
from chatd.engine.output import PlainPlan, plan_output
from chatd.engine.runtime import Batch, Runtime, default_model_path
from chatd.engine.template import ChatTemplate
from chatd.engine.tools import prepare_messages, render_tool_call

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = ToolSpec(
    "function",
    "get_weather",
    "The current weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["c", "f"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    strict=True,
)
CLOCK = ToolSpec("function", "get_time", "The current time.", None)
CODE = ToolSpec(
    "custom",
    "ticket",
    "Open a ticket.",
    grammar={
        "type": "grammar",
        "grammar": {"syntax": "regex", "definition": r"[A-Z]{3}-\d{2,4}"},
    },
)
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Model:
    """The default model with a one-sequence context, decoded step by step."""

    def __init__(self) -> None:
        self.runtime = Runtime(default_model_path(), n_ctx=2048, n_seq_max=1, n_threads=1)
        self.vocab = self.runtime.vocab
        self.template = ChatTemplate(self.runtime.metadata.get("tokenizer.chat_template"))
        self.batch = Batch(512)
        self.cached: list[int] = []  # prompt tokens in the KV cache of sequence 0

    def prompt(self, request: GenerationRequest) -> list[int]:
        return self.vocab.tokenize(self.template.render(prepare_messages(request)), special=True)

    def run(
        self, request: GenerationRequest, seed: int, max_tokens: int = 48, temperature: float = 1.0
    ) -> tuple[list[Event], str]:
        """Decode one choice of `request`; returns its events (Finish excluded) and reason."""
        plan = plan_output(request, self.vocab)
        choice = plan.new_choice(0)
        rng = np.random.default_rng(seed)
        prompt = self.prompt(request)
        kept = 0
        while kept < min(len(prompt), len(self.cached)) - 1 and prompt[kept] == self.cached[kept]:
            kept += 1
        self.runtime.seq_rm(0, kept, -1)
        self.cached = prompt[:-1]
        events: list[Event] = []
        reason = "length"
        for start in range(kept, len(prompt) - 1, self.batch.capacity):
            self.decode(prompt[start : min(start + self.batch.capacity, len(prompt) - 1)], start)
        pos = len(prompt) - 1
        token = prompt[-1]
        for _ in range(max_tokens):
            self.decode([token], pos)
            pos += 1
            logits = self.runtime.logits(self.batch.n - 1).astype(np.float64)
            mask = choice.mask()
            if mask is not None:
                logits[~mask] = -np.inf
            token = sample(logits, rng, temperature)
            choice.advance(token)
            if token in self.vocab.eog_ids:
                reason = "stop"
                break
            events += choice.feed(self.vocab.token_bytes(token).decode("utf-8", "replace"), None)
            if choice.must_stop():
                reason = "stop"
                break
        tail, reason = choice.finish(reason)  # type: ignore[arg-type]
        if isinstance(choice, ConstrainedChoice):
            assert choice.error == ""
        return events + tail, reason

    def decode(self, tokens: list[int], pos: int) -> None:
        self.batch.clear()
        for i, token in enumerate(tokens):
            self.batch.add(token, pos + i, 0, i == len(tokens) - 1)
        assert self.runtime.decode(self.batch) == 0


def sample(logits: np.ndarray, rng: np.random.Generator, temperature: float) -> int:
    if temperature == 0:
        return int(np.argmax(logits))
    x = logits / temperature
    p = np.exp(x - x.max())
    return int(rng.choice(len(p), p=p / p.sum()))


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    m = Model()
    yield m
    m.runtime.close()


def content(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls(events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.id is not None:
                assert event.call_index == len(out)
                assert re.fullmatch(r"call_[A-Za-z0-9]{24}", event.id)
                out.append({"kind": event.kind, "name": event.name, "input": ""})
            out[event.call_index]["input"] += event.arguments
    return out


def ask(text: str, **kwargs: Any) -> GenerationRequest:
    if isinstance(kwargs.get("response_format"), dict):
        kwargs["response_format"] = response_format_of(kwargs["response_format"])
    return GenerationRequest(model="m", messages=[{"role": "user", "content": text}], **kwargs)


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def drive(model: Model, request: GenerationRequest, text: str) -> ConstrainedChoice:
    """A choice of `request` that has consumed `text` (which must be allowed)."""
    plan = plan_constrained(request, model.vocab)
    assert plan is not None
    choice = plan.new_choice(0)
    tokenizer = grammars_for(model.vocab).tokenizer
    for token in tokenizer.tokenize_str(text):
        assert choice.mask()[token], (text, tokenizer.dbg_tokens([token]))
        choice.advance(token)
    assert choice.error == ""
    return choice


def token_of(model: Model, text: str) -> int:
    [token] = model.vocab.tokenize(text, special=False)
    return token


# -- plans and masks ---------------------------------------------------------------------


def test_free_output_has_no_plan(model: Model) -> None:
    assert isinstance(plan_output(ask("hi"), model.vocab), PlainPlan)
    assert isinstance(
        plan_output(ask("hi", response_format={"type": "text"}), model.vocab), PlainPlan
    )
    none = ask("hi", tools=[WEATHER], tool_choice=ToolChoice("none"))
    assert isinstance(plan_output(none, model.vocab), PlainPlan)


def test_json_object_mask(model: Model) -> None:
    choice = drive(model, ask("hi", response_format={"type": "json_object"}), "")
    mask = choice.mask()
    assert mask.dtype == np.bool_ and mask.shape == (model.vocab.n_vocab,)
    assert mask[token_of(model, "{")]
    assert not mask[token_of(model, "hello")]
    assert not mask[model.vocab.eog_ids].any()
    for token in grammars_for(model.vocab).tokenizer.tokenize_str('{"a": [1, "x"]}'):
        assert not choice.must_stop()
        choice.advance(token)
    assert choice.must_stop()


def test_compact_json_style(model: Model) -> None:
    choice = drive(model, ask("hi", response_format={"type": "json_object"}), '{"a":')
    assert choice.mask()[token_of(model, " ")]
    choice = drive(model, ask("hi", response_format={"type": "json_object"}), '{"a": ')
    assert not choice.mask()[token_of(model, " ")]
    assert not choice.mask()[token_of(model, "\n")]


def test_auto_tools_text_or_call(model: Model) -> None:
    request = ask("hi", tools=[WEATHER, CLOCK])
    choice = drive(model, request, "Let me look.")
    assert choice.mask()[model.vocab.eog_ids].all()
    choice = drive(model, request, "Let me look.\n<tool_call")
    assert not choice.mask()[model.vocab.eog_ids].any()
    assert not choice.mask()[token_of(model, "X")]
    call = render_tool_call("function", "get_weather", '{"city": "Paris", "unit": "c"}')
    choice = drive(model, request, "Let me look.\n" + call)
    assert not choice.must_stop()
    assert choice.mask()[model.vocab.eog_ids].all()
    choice = drive(model, request, call + "\n" + render_tool_call("function", "get_time", "{}"))
    assert not choice.must_stop()
    choice = drive(model, request, call + "\n")
    assert choice.mask()[model.vocab.eog_ids].all()
    assert not choice.mask()[token_of(model, "Hello")]


def test_single_call_when_not_parallel(model: Model) -> None:
    call = render_tool_call("function", "get_weather", '{"city": "Oslo", "unit": "c"}')
    for request in (
        ask("hi", tools=[WEATHER, CLOCK], parallel_tool_calls=False),
        ask("hi", tools=[WEATHER, CLOCK], tool_choice=ToolChoice("required", ["get_weather"])),
        ask("hi", tools=[WEATHER], tool_choice=ToolChoice("auto"), legacy_functions=True),
    ):
        assert drive(model, request, call).must_stop()


def test_required_starts_with_a_call(model: Model) -> None:
    choice = drive(model, ask("hi", tools=[WEATHER, CLOCK], tool_choice=ToolChoice("required")), "")
    allowed = np.flatnonzero(choice.mask())
    tokenizer = grammars_for(model.vocab).tokenizer
    assert all("<tool_call".startswith(tokenizer.decode_str([t])) for t in allowed)


def test_a_named_call_is_forced(model: Model) -> None:
    request = ask("hi", tools=[WEATHER, CLOCK], tool_choice=ToolChoice("required", ["get_weather"]))
    choice = drive(model, request, "")
    tokenizer = grammars_for(model.vocab).tokenizer
    forced = ""
    while len(forced) < 200:
        allowed = np.flatnonzero(choice.mask())
        pieces = {int(t): tokenizer.decode_str([int(t)]) for t in allowed}
        token, longest = max(pieces.items(), key=lambda item: len(item[1]))
        if not all(longest.startswith(p) for p in pieces.values()):
            break  # the model has a choice here
        choice.advance(token)
        forced += longest
    assert forced.startswith('<tool_call>\n{"name": "get_weather", "arguments": {"')


def test_arguments_are_always_an_object(model: Model) -> None:
    untyped = ToolSpec("function", "search", None, {"properties": {"q": {"type": "string"}}})
    request = ask("hi", tools=[untyped], tool_choice=ToolChoice("required"))
    choice = drive(model, request, '<tool_call>\n{"name": "search", "arguments": ')
    allowed = np.flatnonzero(choice.mask())
    tokenizer = grammars_for(model.vocab).tokenizer
    assert all(tokenizer.decode_str([t]).startswith("{") for t in allowed)


def test_a_rejected_token_ends_the_choice(model: Model) -> None:
    choice = drive(model, ask("hi", response_format={"type": "json_object"}), "{")
    choice.advance(token_of(model, "hello"))
    assert choice.error
    assert choice.must_stop()
    assert np.array_equal(np.flatnonzero(choice.mask()), model.vocab.eog_ids)


def test_allowed_tools_subset(model: Model) -> None:
    request = ask("hi", tools=[WEATHER, CLOCK], tool_choice=ToolChoice("auto", ["get_time"]))
    choice = drive(model, request, '<tool_call>\n{"name": "get_')
    assert choice.mask()[token_of(model, "time")]
    assert not choice.mask()[token_of(model, "weather")]


def test_tools_with_json_content(model: Model) -> None:
    request = ask("hi", tools=[WEATHER], response_format=schema_format(PERSON))
    assert drive(model, request, '{"name": "Al", "age": 3}').must_stop()
    drive(model, request, render_tool_call("function", "get_time", "{}")[:12])


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "foo"}, "is not valid under any of the given schemas"),
        ({"type": "string", "format": "no-such-format"}, "no-such-format"),
        ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
        ({"$ref": "#/$defs/missing"}, "missing"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_unusable_response_schema(model: Model, schema: Any, needle: str) -> None:
    with pytest.raises(BackendError) as caught:
        plan_output(ask("hi", response_format=schema_format(schema)), model.vocab)
    assert caught.value.param == "response_format"
    assert caught.value.message.startswith("Invalid schema for response_format 'answer': ")
    assert needle in caught.value.message


def test_unusable_tool_definitions(model: Model) -> None:
    odd = {"type": "object", "properties": {"d": {"type": "string", "format": "no-such"}}}
    strict = ToolSpec("function", "f", None, odd, strict=True)
    with pytest.raises(BackendError) as caught:
        plan_output(ask("hi", tools=[WEATHER, strict]), model.vocab)
    assert caught.value.param == "tools[1].function.parameters"
    assert caught.value.code == "invalid_function_parameters"
    lenient = ToolSpec("function", "f", None, odd, strict=False)
    assert plan_output(ask("hi", tools=[WEATHER, lenient]), model.vocab) is not None
    bad = ToolSpec(
        "custom",
        "c",
        None,
        grammar={"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: nope"}},
    )
    with pytest.raises(BackendError) as caught:
        plan_output(ask("hi", tools=[bad]), model.vocab)
    assert caught.value.param == "tools[0].custom.format"


# -- end to end with the model -----------------------------------------------------------


def test_json_schema_greedy(model: Model) -> None:
    request = ask("Invent a person called Bob, aged 42.", response_format=schema_format(PERSON))
    events, reason = model.run(request, seed=0, temperature=0)
    assert reason == "stop"
    jsonschema.validate(json.loads(content(events)), PERSON)


def test_length_cut(model: Model) -> None:
    request = ask("Invent a person.", response_format=schema_format(PERSON))
    events, reason = model.run(request, seed=1, max_tokens=3)
    assert reason == "length"
    assert content(events).startswith("{")


def test_forced_call_and_custom_tool(model: Model) -> None:
    request = ask(
        "What's the weather in Paris?",
        tools=[WEATHER, CLOCK, CODE],
        tool_choice=ToolChoice("required", ["get_weather"]),
    )
    events, reason = model.run(request, seed=2, temperature=0)
    assert reason == "tool_calls"
    [call] = calls(events)
    assert call["name"] == "get_weather" and call["kind"] == "function"
    jsonschema.validate(json.loads(call["input"]), WEATHER.parameters)
    request = ask(
        "Open a ticket.", tools=[WEATHER, CODE], tool_choice=ToolChoice("required", ["ticket"])
    )
    events, reason = model.run(request, seed=3)
    [call] = calls(events)
    assert reason == "tool_calls" and call["kind"] == "custom" and call["name"] == "ticket"
    assert re.fullmatch(r"[A-Z]{3}-\d{2,4}", call["input"])
    request = ask("Weather in Rome?", tools=[WEATHER], tool_choice=ToolChoice("required"))
    request.legacy_functions = True
    events, reason = model.run(request, seed=4, temperature=0)
    assert reason == "function_call" and len(calls(events)) == 1


# -- property-based: generated schemas, random seeds -------------------------------------

NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
LEAVES = st.one_of(
    st.integers(1, 24).map(lambda n: {"type": "string", "maxLength": n}),
    st.lists(st.text(string.ascii_letters + " ", min_size=1, max_size=8), min_size=1, max_size=4)
    .map(lambda xs: sorted(set(xs)))
    .map(lambda xs: {"enum": xs}),
    st.tuples(st.integers(-500, 500), st.integers(0, 500)).map(
        lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}
    ),
    st.just({"type": "number", "minimum": -5.5, "maximum": 1000}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.sampled_from(["^[a-z]{1,6}$", "^[0-9]{3}-[0-9]{2}$", "^(yes|no)$"]).map(
        lambda p: {"type": "string", "pattern": p}
    ),
    st.just({"type": "string", "format": "date"}),
    st.just({"const": "fixed"}),
)


def _object(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _compound(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    objects = st.dictionaries(NAMES, children, min_size=1, max_size=3).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)), unique=True).map(
            lambda required: _object(props, required)
        )
    )
    arrays = st.tuples(children, st.integers(0, 2), st.integers(0, 2)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
    )
    maps = children.map(lambda c: {"type": "object", "additionalProperties": c, "maxProperties": 2})
    any_of = st.lists(children, min_size=2, max_size=2).map(lambda xs: {"anyOf": xs})
    return st.one_of(objects, arrays, maps, any_of)


SCHEMAS = st.recursive(LEAVES, lambda children: _compound(children), max_leaves=5)


@st.composite
def top_schemas(draw: st.DrawFn) -> dict[str, Any]:
    inner = draw(SCHEMAS)
    if draw(st.booleans()):
        return {
            "$defs": {"item": inner},
            **_object(
                {"first": {"$ref": "#/$defs/item"}, "more": {"$ref": "#/$defs/item"}}, ["first"]
            ),
        }
    return _object({"answer": inner}, ["answer"])


@SETTINGS
@given(schema=top_schemas(), seed=st.integers(0, 2**32 - 1))
def test_generated_schemas_always_validate(model: Model, schema: dict[str, Any], seed: int) -> None:
    request = ask("Answer in JSON.", response_format=schema_format(schema))
    events, reason = model.run(request, seed, max_tokens=40)
    text = content(events)
    if reason == "stop":
        jsonschema.validate(json.loads(text), schema)
    else:
        assert reason == "length" and text.startswith("{")


@SETTINGS
@given(parameters=top_schemas(), seed=st.integers(0, 2**32 - 1), strict=st.booleans())
def test_forced_tool_calls_always_validate(
    model: Model, parameters: dict[str, Any], seed: int, strict: bool
) -> None:
    tool = ToolSpec("function", "act", "Do it.", parameters, strict=strict)
    request = ask("Go.", tools=[CLOCK, tool], tool_choice=ToolChoice("required", ["act"]))
    events, reason = model.run(request, seed, max_tokens=40)
    found = calls(events)
    assert content(events) == ""
    assert len(found) == 1 and found[0]["name"] == "act"
    if reason == "tool_calls":
        jsonschema.validate(json.loads(found[0]["input"]), parameters)
    else:
        assert reason == "length"
