"""An Anthropic-kind upstream, live: chatd's app with AnthropicBackend in front of
llama.cpp's `llama-server`, whose `/v1/messages` speaks the Messages API; the official
openai SDK as the client; every response and chunk validated against OpenAI's schemas."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from chatd.backend import UpstreamSpec
from chatd.config import Settings
from chatd.upstream.anthropic import AnthropicBackend
from tests.conftest import free_port
from tests.inproc import ThreadServer
from tests.llama_server import LlamaServer
from tests.schema import validate

MODEL = "claude/smollm2"
HI = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with LlamaServer(tmp_path_factory.mktemp("llama-server")) as server:
        yield server


@pytest.fixture(scope="module")
def chatd_url(upstream: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from chatd.api.app import create_app

    live = UpstreamSpec(
        "claude", "anthropic", upstream.url, api_key="sk-ant-test", models=["smollm2"]
    )
    dead = UpstreamSpec(
        "nowhere", "anthropic", f"http://127.0.0.1:{free_port()}", models=["claude-x"]
    )
    settings = Settings(data_dir=tmp_path_factory.mktemp("gateway"))
    app = create_app(settings, lambda _: [AnthropicBackend(live), AnthropicBackend(dead)])
    with ThreadServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(chatd_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=chatd_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def stream(client: openai.OpenAI, **fields: Any) -> list[dict[str, Any]]:
    """Every chunk of a streamed answer, validated, usage included."""
    fields.setdefault("stream_options", {"include_usage": True})
    chunks = [
        c.model_dump(exclude_unset=True)
        for c in client.chat.completions.create(stream=True, **fields)
    ]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return chunks


def test_models_are_listed_under_the_upstreams_name(client: openai.OpenAI) -> None:
    listing = client.models.list().model_dump()
    validate("ListModelsResponse", listing)
    owners = {m["id"]: m["owned_by"] for m in listing["data"]}
    assert owners == {"claude/smollm2": "claude", "nowhere/claude-x": "nowhere"}


def test_models_come_from_the_upstream_when_the_config_lists_none(upstream: LlamaServer) -> None:
    backend = AnthropicBackend(UpstreamSpec("claude", "anthropic", upstream.url + "/v1"))

    async def listed() -> list[str]:
        try:
            await backend.start()
            return [m.id for m in backend.list_models()]
        finally:
            await backend.close()

    ids = asyncio.run(listed())
    assert ids and all(i.startswith("claude/") for i in ids)


def test_plain_answer_with_system_prompt(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are a pirate."}, *HI],
        max_tokens=8,
        temperature=0,
    ).model_dump(exclude_unset=True)
    validate("CreateChatCompletionResponse", completion)
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_system_prompt_reaches_the_model(client: openai.OpenAI) -> None:
    def prompt_tokens(messages: list[dict[str, str]]) -> int:
        # greedy and a few tokens: llama-server answers a stream whose one token is empty with
        # only message_delta and message_stop (no message_start, so no prompt counts at all)
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, temperature=0
        )
        assert answer.usage is not None
        return answer.usage.prompt_tokens

    # the model's template puts a default system prompt in when there is none, so compare
    # a short system prompt with a longer one
    short = {"role": "system", "content": "Be brief."}
    long = {"role": "system", "content": "Answer in French, always, in one short line, politely."}
    assert prompt_tokens([long, *HI]) > prompt_tokens([short, *HI]) + 8


def test_streaming_relays_text_finish_and_usage(client: openai.OpenAI) -> None:
    chunks = stream(client, model=MODEL, messages=HI, max_tokens=6, temperature=0)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert text and finishes[-1] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 6


def test_a_stop_sequence_ends_the_answer(client: openai.OpenAI) -> None:
    # two runs are not compared: llama-server's logits depend on its batch and KV layout
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    cut = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=40, temperature=0, stop=["3"]
    )
    validate("CreateChatCompletionResponse", cut.model_dump(exclude_unset=True))
    text = cut.choices[0].message.content or ""
    assert cut.choices[0].finish_reason == "stop", text
    assert "3" not in text and "2" in text


def test_a_tool_round_trip(client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=48,
        temperature=0,
    ).model_dump(exclude_unset=True)
    validate("CreateChatCompletionResponse", first)
    choice = first["choices"][0]
    # SmolLM2's template does not force a call: llama-server may answer in text
    for call in choice["message"].get("tool_calls") or ():
        assert call["function"]["name"] == "get_weather" and call["id"]
        assert choice["finish_reason"] in ("tool_calls", "length")
    # the conversation continues with a call and its result, as tool_use / tool_result
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
    }
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 degrees Celsius."},
    ]
    chunks = stream(
        client, model=MODEL, messages=messages, tools=[WEATHER], max_tokens=16, temperature=0
    )
    assert chunks[-1]["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


def test_fields_the_messages_api_cannot_honour_are_refused(client: openai.OpenAI) -> None:
    for field, value in {
        "logprobs": True,
        "seed": 7,
        "frequency_penalty": 0.5,
        "logit_bias": {"1": 2},
    }.items():
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, **{field: value})
        body = caught.value.response.json()
        validate("ErrorResponse", body)
        assert body["error"]["param"] == field and field in body["error"]["message"]
        assert MODEL in body["error"]["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, temperature=1.5)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]
    assert MODEL in caught.value.response.json()["error"]["message"]


def test_n_is_served_by_n_upstream_requests_with_usage_summed(client: openai.OpenAI) -> None:
    # one prompt throughout: llama-server reports its cached part as cache reads, which the
    # adapter counts in prompt_tokens, so every request of it has the same prompt_tokens
    messages = [{"role": "user", "content": f"{uuid.uuid4().hex[:8]} Say hello."}]
    one = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=4, temperature=0.8
    )
    two = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=4, n=2, temperature=0.8
    )
    validate("CreateChatCompletionResponse", two.model_dump(exclude_unset=True))
    assert [c.index for c in two.choices] == [0, 1]
    assert one.usage is not None and two.usage is not None
    assert two.usage.prompt_tokens == 2 * one.usage.prompt_tokens
    if all(c.finish_reason == "length" for c in two.choices):
        assert two.usage.completion_tokens == 8
    chunks = stream(client, model=MODEL, messages=messages, max_tokens=4, n=2)
    finished = {
        c["choices"][0]["index"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    }
    assert finished == {0, 1}
    assert chunks[-1]["usage"]["prompt_tokens"] == 2 * one.usage.prompt_tokens


def test_an_unreachable_upstream_is_a_502_naming_it(chatd_url: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="nowhere/claude-x", messages=HI, max_tokens=2)
    assert caught.value.status_code == 502
    body = caught.value.response.json()
    validate("ErrorResponse", body)
    assert "nowhere" in body["error"]["message"]
    # streamed too: the failure comes before the first byte, so it is an HTTP error
    with httpx.Client(timeout=30) as http:
        answer = http.post(
            chatd_url + "/v1/chat/completions",
            json={"model": "nowhere/claude-x", "messages": HI, "stream": True},
        )
    assert answer.status_code == 502 and "nowhere" in answer.json()["error"]["message"]


def test_an_upstream_refusal_is_the_clients_400_with_its_message(client: openai.OpenAI) -> None:
    # llama-server refuses a prompt longer than its context (4096 per slot) with a 400
    long = [{"role": "user", "content": "word " * 6000}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=long, max_tokens=2)
    body = caught.value.response.json()
    validate("ErrorResponse", body)
    assert "context size" in body["error"]["message"]  # the vendor's words
    assert "claude" in body["error"]["message"]  # and whose they are
