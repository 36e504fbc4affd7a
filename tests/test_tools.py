"""Tool prompt rendering and the streaming parser of tool calls (no model needed)."""

from __future__ import annotations

import json
import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.backend import (
    GenerationRequest,
    ResponseFormat,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from chatd.engine.template import ChatTemplate
from chatd.engine.tools import (
    ToolCallParser,
    new_call_id,
    prepare_messages,
    render_assistant_tool_calls,
    render_tool_call,
    render_tools_prompt,
)

WEATHER = ToolSpec(
    kind="function",
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
SQL = ToolSpec(kind="custom", name="run_sql", description="Run a query.")


def parse(pieces: list[str], legacy: bool = False, reason: str = "stop"):
    parser = ToolCallParser(0, legacy)
    events = []
    for piece in pieces:
        events += parser.feed(piece, None)
    tail, final = parser.finish(reason)  # type: ignore[arg-type]
    return events + tail, final


def assemble(events) -> tuple[str | None, list[dict]]:
    """Events to (content, calls) as the API layer assembles them."""
    content = None
    calls: list[dict] = []
    for event in events:
        if isinstance(event, TextDelta):
            content = (content or "") + event.text
        elif isinstance(event, ToolCallDelta):
            if event.id is not None:
                assert event.call_index == len(calls)
                calls.append({"id": event.id, "kind": event.kind, "name": event.name, "args": ""})
            calls[event.call_index]["args"] += event.arguments
    return content, calls


def split_randomly(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 12))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_call_id_shape() -> None:
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)


def test_plain_text_passes_through() -> None:
    events, reason = parse(["Hello", " world", "!\n"])
    assert assemble(events) == ("Hello world!\n", [])
    assert reason == "stop"


def test_text_that_looks_like_a_call_but_is_not() -> None:
    events, _ = parse(["a <tool", "box> and <b>"])
    assert assemble(events) == ("a <toolbox> and <b>", [])


def test_one_function_call_streams_its_arguments() -> None:
    text = render_tool_call("function", "get_weather", '{"city": "Paris"}')
    events, reason = parse(split_randomly(text, 1))
    content, calls = assemble(events)
    assert content is None
    assert calls == [
        {
            "id": calls[0]["id"],
            "kind": "function",
            "name": "get_weather",
            "args": '{"city": "Paris"}',
        }
    ]
    assert reason == "tool_calls"
    first = events[0]
    assert isinstance(first, ToolCallDelta) and first.arguments == "" and first.name


def test_text_then_parallel_calls() -> None:
    text = (
        "Let me check.\n"
        + render_tool_call("function", "get_weather", '{"city": "Paris"}')
        + "\n"
        + render_tool_call("function", "get_weather", '{"city": "Rome", "x": {"y": "}"}}')
    )
    for seed in range(30):
        content, calls = assemble(parse(split_randomly(text, seed))[0])
        assert content == "Let me check."
        assert [c["args"] for c in calls] == [
            '{"city": "Paris"}',
            '{"city": "Rome", "x": {"y": "}"}}',
        ]
        assert len({c["id"] for c in calls}) == 2


def test_custom_call() -> None:
    text = render_tool_call("custom", "run_sql", "SELECT 1;\nSELECT 2;")
    content, calls = assemble(parse(split_randomly(text, 3))[0])
    assert content is None
    assert calls[0]["kind"] == "custom"
    assert calls[0]["name"] == "run_sql"
    assert calls[0]["args"] == "SELECT 1;\nSELECT 2;"


def test_legacy_function_call_reason() -> None:
    text = render_tool_call("function", "get_weather", "{}")
    assert parse([text], legacy=True)[1] == "function_call"


def test_cut_by_length_keeps_reason_and_partial_arguments() -> None:
    text = render_tool_call("function", "get_weather", '{"city": "Paris"}')
    events, reason = parse([text[: text.index("Par") + 3]], reason="length")
    assert reason == "length"
    assert assemble(events)[1][0]["args"] == '{"city": "Par'


def test_logprobs_ride_on_events() -> None:
    parser = ToolCallParser(0)
    lp = [TokenLogprob("Hi", -0.1, [72, 105], [])]
    events = parser.feed("Hi", lp)
    assert events[0].logprobs == lp
    lp2 = [TokenLogprob("<tool", -0.2, None, [])]
    assert parser.feed(" <tool", lp2) == []
    events = parser.feed("box", None)
    assert events[0].text == " <toolbox" and events[0].logprobs == lp2


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["get_weather", "a", "run-x_1"]),
            st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3),
        ),
        max_size=3,
    ),
    st.text(max_size=20).filter(lambda t: "<tool_call" not in t),
    st.integers(0, 10**6),
)
def test_reassembly_property(calls, preface, seed) -> None:
    rendered = [render_tool_call("function", n, json.dumps(a)) for n, a in calls]
    text = preface + ("\n" if calls else "") + "\n".join(rendered)
    pieces = split_randomly(text, seed) if len(text) > 1 else [text]
    content, parsed = assemble(parse(pieces)[0])
    expected = preface.rstrip() if calls else preface
    assert (content or "") == expected
    assert [(c["name"], json.loads(c["args"])) for c in parsed] == calls


def test_tools_prompt() -> None:
    prompt = render_tools_prompt([WEATHER, SQL], ToolChoice(), parallel_tool_calls=False)
    assert prompt is not None
    assert '"name": "get_weather"' in prompt and '"type": "custom"' in prompt
    assert "<tool_call>" in prompt and "at most one" in prompt
    assert render_tools_prompt([WEATHER], ToolChoice(mode="none")) is None
    named = render_tools_prompt([WEATHER, SQL], ToolChoice(mode="required", names=["run_sql"]))
    assert "You must call run_sql" in named  # type: ignore[operator]


def test_prepare_messages_multi_turn() -> None:
    request = GenerationRequest(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "21C"}],
            },
        ],
        tools=[WEATHER],
    )
    out = prepare_messages(request)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools")
    assert out[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    )
    assert out[3]["content"] == (
        "<tool_response>\n18C\n</tool_response>\n<tool_response>\n21C\n</tool_response>"
    )
    assert request.messages[0]["content"] == "Be brief."


def test_prepare_messages_legacy_and_new_system() -> None:
    message = {
        "role": "assistant",
        "content": "ok",
        "function_call": {"name": "f", "arguments": "x"},
    }
    assert render_assistant_tool_calls(message) == (
        'ok\n<tool_call>\n{"name": "f", "arguments": "x"}\n</tool_call>'
    )
    request = GenerationRequest(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        response_format=ResponseFormat(type="json_object"),
    )
    out = prepare_messages(request)
    assert out[0] == {"role": "system", "content": "Respond with a JSON object."}


def test_content_parts_render_the_same_with_and_without_tools() -> None:
    def text(*pieces: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": piece} for piece in pieces]

    messages = [
        {"role": "system", "content": text("Be brief.", "Answer in French.")},
        {"role": "user", "content": text("Weather", "in Paris?")},
    ]
    template = ChatTemplate(None)  # ChatML, as SmolLM2's own template
    plain = template.render(prepare_messages(GenerationRequest(model="m", messages=messages)))
    tooled = template.render(
        prepare_messages(GenerationRequest(model="m", messages=messages, tools=[WEATHER]))
    )
    system = "<|im_start|>system\nBe brief.\nAnswer in French."
    assert plain.startswith(system + "<|im_end|>\n")
    assert tooled.startswith(system + "\n\n# Tools\n")
    user = "<|im_start|>user\nWeather\nin Paris?<|im_end|>\n"
    assert user in plain and user in tooled
