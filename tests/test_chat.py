"""POST /v1/chat/completions against a live server, with the official SDK."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL, Server
from tests.schema import validate

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def create(client: openai.OpenAI, **kwargs: Any) -> dict[str, Any]:
    """A completion as the raw JSON the server sent, validated against the schema."""
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", HELLO)
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    raw.parse()  # the SDK's own parsing accepts it too
    return body


def stream(client: openai.OpenAI, **kwargs: Any) -> list[dict[str, Any]]:
    """Every chunk of a stream, validated, after checking the SSE framing."""
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", HELLO)
    with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in raw.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = []
    for line in lines[:-1]:
        assert line.startswith("data: ")
        chunk = json.loads(line[len("data: ") :])
        validate("CreateChatCompletionStreamResponse", chunk)
        chunks.append(chunk)
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    return chunks


def streamed_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index
    )


def test_basic_completion(client: openai.OpenAI) -> None:
    body = create(client, max_completion_tokens=20)
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    assert body["system_fingerprint"].startswith("fp_")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 0 < usage["completion_tokens"] <= 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_sdk_objects(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=5, temperature=0
    )
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_every_message_role(client: openai.OpenAI) -> None:
    messages = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "system", "content": [{"type": "text", "text": "You are kind."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ann"},
        {"role": "assistant", "content": "Hello!", "refusal": None},
        {"role": "user", "content": "What is 2+2?"},
    ]
    body = create(client, messages=messages, max_tokens=10, temperature=0)
    assert body["choices"][0]["message"]["content"]


def test_temperature_zero_is_deterministic(steady: Server) -> None:
    client = steady.client()
    a = create(client, temperature=0, max_tokens=24)
    b = create(client, temperature=0, max_tokens=24)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_seed_reproduces_and_varies(steady: Server) -> None:
    client = steady.client()

    def text(seed: int) -> str:
        body = create(client, seed=seed, temperature=1.3, max_tokens=24)
        return body["choices"][0]["message"]["content"]

    assert text(7) == text(7)
    assert len({text(s) for s in range(1, 5)}) > 1


def test_n_choices(client: openai.OpenAI) -> None:
    body = create(client, n=3, seed=3, temperature=1.2, max_tokens=16)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    texts = {c["message"]["content"] for c in body["choices"]}
    assert len(texts) > 1
    assert body["usage"]["completion_tokens"] <= 48


def test_n_beyond_parallel(client: openai.OpenAI) -> None:
    body = create(client, n=20, seed=2, max_tokens=3)
    assert len(body["choices"]) == 20
    assert body["usage"]["completion_tokens"] == 60


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    body = create(client, max_tokens=3, temperature=0)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_ignore_eos_generates_exactly_max_tokens(client: openai.OpenAI) -> None:
    ask = {"messages": [{"role": "user", "content": "Say hi."}], "temperature": 0, "max_tokens": 50}
    short = create(client, **ask)
    assert short["choices"][0]["finish_reason"] == "stop"
    assert short["usage"]["completion_tokens"] < 50
    forced = create(client, **ask, extra_body={"ignore_eos": True})
    assert forced["choices"][0]["finish_reason"] == "length"
    assert forced["usage"]["completion_tokens"] == 50


def test_stop_sequences_never_included(steady: Server) -> None:
    client = steady.client()
    full = create(client, temperature=0, max_tokens=30)["choices"][0]["message"]["content"]
    assert len(full) > 10
    stop = full[5:8]
    cut = create(client, temperature=0, max_tokens=30, stop=[stop, "zzzz"])
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == full[: full.index(stop)]
    chunks = stream(client, temperature=0, max_tokens=30, stop=stop)
    assert streamed_text(chunks) == full[: full.index(stop)]


def test_stream_shape(client: openai.OpenAI) -> None:
    chunks = stream(client, max_tokens=12, temperature=0)
    first = chunks[0]["choices"][0]
    assert first["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in {"stop", "length"}
    assert sum(f is not None for f in finishes) == 1
    assert all("usage" not in c for c in chunks)


def test_stream_include_usage(client: openai.OpenAI) -> None:
    chunks = stream(client, max_tokens=12, temperature=0, stream_options={"include_usage": True})
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 12


def test_stream_equals_non_stream(steady: Server) -> None:
    client = steady.client()
    kwargs = {"seed": 11, "temperature": 0.9, "max_tokens": 30}
    body = create(client, **kwargs)
    chunks = stream(client, **kwargs)
    assert streamed_text(chunks) == body["choices"][0]["message"]["content"]


def test_stream_n_interleaved(steady: Server) -> None:
    client = steady.client()
    chunks = stream(client, n=2, seed=5, temperature=1.0, max_tokens=10)
    indexes = [c["choices"][0]["index"] for c in chunks]
    assert set(indexes) == {0, 1}
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
        assert mine[0]["delta"]["role"] == "assistant"
        assert sum(c["finish_reason"] is not None for c in mine) == 1
    body = create(client, n=2, seed=5, temperature=1.0, max_tokens=10)
    for i in (0, 1):
        assert streamed_text(chunks, i) == body["choices"][i]["message"]["content"]


def test_logprobs(client: openai.OpenAI) -> None:
    body = create(client, logprobs=True, top_logprobs=3, max_tokens=15, temperature=0)
    choice = body["choices"][0]
    entries = choice["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"]
    joined = b"".join(bytes(e["bytes"]) for e in entries).decode()
    assert joined == choice["message"]["content"]
    for entry in entries:
        assert entry["logprob"] <= 0
        tops = entry["top_logprobs"]
        assert len(tops) == 3
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert tops[0]["token"] == entry["token"]  # greedy picks the most likely token


def test_logprobs_stream(client: openai.OpenAI) -> None:
    chunks = stream(client, logprobs=True, top_logprobs=2, max_tokens=10, temperature=0)
    entries = [
        e
        for c in chunks
        for choice in c["choices"]
        if choice["logprobs"]
        for e in choice["logprobs"]["content"]
    ]
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == streamed_text(chunks)
    assert len(entries) == 10


def test_logit_bias_bans_and_forces(client: openai.OpenAI) -> None:
    def tokens(body: dict[str, Any]) -> list[str]:
        return [e["token"] for e in body["choices"][0]["logprobs"]["content"]]

    # token id 28 is "," in SmolLM2's vocabulary
    forced = create(client, logit_bias={"28": 100}, max_tokens=3, temperature=0, logprobs=True)
    assert tokens(forced) == [",", ",", ","]
    ask = {
        "messages": [{"role": "user", "content": "List five colours, separated by commas."}],
        "max_tokens": 20,
        "logprobs": True,
        "top_logprobs": 5,
    }
    plain = create(client, **ask, temperature=0)
    wanted = {
        t["token"] for e in plain["choices"][0]["logprobs"]["content"] for t in e["top_logprobs"]
    }
    assert "," in wanted  # the model would write a comma somewhere
    banned = create(client, **ask, temperature=1.5, seed=3, n=4, logit_bias={"28": -100})
    for choice in banned["choices"]:
        assert "," not in [e["token"] for e in choice["logprobs"]["content"]]


def test_penalties_change_output(steady: Server) -> None:
    # compares two runs: on the shared server a cached prompt can change the greedy text
    client = steady.client()
    messages = [{"role": "user", "content": "Repeat the word cat many times."}]
    plain = create(client, messages=messages, temperature=0, max_tokens=30)
    penalised = create(
        client,
        messages=messages,
        temperature=0,
        max_tokens=30,
        frequency_penalty=2.0,
        presence_penalty=2.0,
    )
    assert (
        plain["choices"][0]["message"]["content"] != penalised["choices"][0]["message"]["content"]
    )


def content(body: dict[str, Any], index: int = 0) -> str:
    return body["choices"][index]["message"]["content"]


def test_top_k_one_is_greedy(steady: Server) -> None:
    # compares runs: on the steady server every run sees the same KV layout
    client = steady.client()
    greedy = create(client, temperature=0, max_tokens=20)
    hot = {"temperature": 1.8, "seed": 1, "max_tokens": 20}
    assert content(create(client, **hot, extra_body={"top_k": 1})) == content(greedy)
    assert content(create(client, **hot)) != content(greedy)  # top_k made the difference


def test_min_p_keeps_only_tokens_near_the_top(client: openai.OpenAI) -> None:
    # at temperature 1 the sampled distribution is the model's own, which logprobs report
    ask = {
        "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        "temperature": 1.0,
        "seed": 11,
        "n": 2,
        "max_tokens": 24,
        "logprobs": True,
        "top_logprobs": 1,
    }
    floor = math.log(0.3)

    def gaps(body: dict[str, Any]) -> list[float]:
        """How far below the most likely token each sampled token was (log scale)."""
        return [
            entry["logprob"] - entry["top_logprobs"][0]["logprob"]
            for choice in body["choices"]
            for entry in choice["logprobs"]["content"]
        ]

    assert min(gaps(create(client, **ask, extra_body={"min_p": 0.3}))) >= floor - 1e-3
    assert min(gaps(create(client, **ask))) < floor  # without min_p such tokens are drawn


def test_repetition_penalty_penalises_repeats(steady: Server) -> None:
    client = steady.client()
    ask = {
        "messages": [{"role": "user", "content": "Repeat the word cat many times."}],
        "temperature": 0,
        "max_tokens": 30,
        "logprobs": True,
    }

    def repeats(body: dict[str, Any]) -> int:
        tokens = [e["token"] for e in body["choices"][0]["logprobs"]["content"]]
        return len(tokens) - len(set(tokens))

    plain = create(client, **ask)
    penalised = create(client, **ask, extra_body={"repetition_penalty": 1.5})
    assert repeats(penalised) < repeats(plain) / 2


def test_models(client: openai.OpenAI, http: httpx.Client) -> None:
    raw = http.get("/v1/models").json()
    validate("ListModelsResponse", raw)
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["smollm2", "gpt-4o-mini"]
    model = client.models.retrieve("smollm2")
    assert model.object == "model"
    validate("Model", http.get("/v1/models/gpt-4o-mini").json())
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    assert http.get("/health").json() == {"status": "ok"}


def test_concurrent_streams(server: Server) -> None:
    import concurrent.futures

    client = server.client()

    def one(seed: int) -> str:
        return streamed_text(stream(client, seed=seed, max_tokens=24))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        texts = list(pool.map(one, range(6)))
    assert all(texts)
