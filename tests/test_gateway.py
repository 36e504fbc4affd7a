"""chatd as a gateway: a pure-gateway `chatd serve` in front of another `chatd serve`.

The upstream is a real chatd on the default model (an OpenAI-kind upstream like any
other); the client is the official SDK; every answer and chunk is checked against the
official schema. Failures are in tests/test_gateway_faults.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server
from tests.schema import validate
from tests.upstreams import UP_KEY, ScriptedUpstream, chatd_upstream

GW_KEY = "sk-gateway"
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = chatd_upstream(tmp_path_factory.mktemp("upstream"), parallel=4)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def gateway_config(up: Server, scripted: ScriptedUpstream) -> str:
    return f"""
[serve]
log_level = "warning"

[[upstreams]]
name = "up"
kind = "openai"
base_url = "{up.url}/v1"
api_key_env = "UP_KEY"
models = ["smollm2"]

[[upstreams]]
name = "scripted"
kind = "openai"
base_url = "{scripted.url("ok")}"
headers = {{ "x-team" = "blue" }}

[[routes]]
model = "pool"
targets = ["scripted/scripted-1", "up/smollm2"]
strategy = "balance"
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Server, scripted: ScriptedUpstream
) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("gateway")
    config = data / "chatd.toml"
    config.write_text(gateway_config(upstream, scripted))
    srv = Server(
        data,
        "--no-local-model",
        "--config",
        str(config),
        "--api-key",
        GW_KEY,
        env={"UP_KEY": UP_KEY},
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gw(gateway: Server) -> openai.OpenAI:
    # a grammar on a busy 2-core machine can take minutes
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=GW_KEY, max_retries=0, timeout=300)


def test_pure_gateway_never_loads_llama_cpp(gateway: Server) -> None:
    assert gateway.proc is not None
    maps = Path(f"/proc/{gateway.proc.pid}/maps").read_text()
    assert "libllama" not in maps and "libggml" not in maps


def test_plain_completion_through_the_gateway(gw: openai.OpenAI) -> None:
    raw = gw.chat.completions.with_raw_response.create(
        model="up/smollm2", messages=HI, max_tokens=8
    )
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    assert body["model"] == "smollm2"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0
    assert float(raw.headers["x-chatd-overhead-ms"]) >= 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming_is_relayed_with_usage_only_when_asked(
    gateway: Server, include_usage: bool
) -> None:
    request = {"model": "up/smollm2", "messages": HI, "max_tokens": 8, "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    chunks = sse(gateway, request)
    assert chunks[-1] == "[DONE]"
    objects = [json.loads(c) for c in chunks[:-1]]
    for chunk in objects:
        validate("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in objects if c["choices"])
    assert text
    usage = [c for c in objects if c.get("usage")]
    assert bool(usage) is include_usage
    if include_usage:
        assert usage[-1] is objects[-1] and usage[-1]["usage"]["completion_tokens"] > 0


def test_several_choices_with_logprobs(gw: openai.OpenAI, gateway: Server) -> None:
    kwargs = {"n": 2, "logprobs": True, "top_logprobs": 2, "max_tokens": 5, "seed": 3}
    body = json.loads(
        gw.chat.completions.with_raw_response.create(model="up/smollm2", messages=HI, **kwargs).text
    )
    validate("CreateChatCompletionResponse", body)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["logprobs"]["content"]
        assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == 2
    chunks = sse(gateway, {"model": "up/smollm2", "messages": HI, "stream": True, **kwargs})
    assert chunks[-1] == "[DONE]"
    objects = [json.loads(c) for c in chunks[:-1]]
    for chunk in objects:
        validate("CreateChatCompletionStreamResponse", chunk)
    finished = {c["choices"][0]["index"] for c in objects if c["choices"][0]["finish_reason"]}
    assert finished == {0, 1}
    assert any(
        c["choices"][0]["logprobs"] and c["choices"][0]["logprobs"]["content"] for c in objects
    )


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_ASK = {
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [WEATHER],
    "tool_choice": "required",
    "max_tokens": 30,
}


def test_tools_through_the_gateway(gw: openai.OpenAI) -> None:
    raw = gw.chat.completions.with_raw_response.create(model="up/smollm2", **WEATHER_ASK)
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    if choice["finish_reason"] == "tool_calls":
        assert set(json.loads(call["function"]["arguments"])) == {"city"}


def test_streamed_tool_calls_through_the_gateway(gateway: Server) -> None:
    chunks = sse(gateway, {"model": "up/smollm2", "stream": True, **WEATHER_ASK})
    assert chunks[-1] == "[DONE]"
    objects = [json.loads(c) for c in chunks[:-1]]
    for chunk in objects:
        validate("CreateChatCompletionStreamResponse", chunk)
    deltas = [
        call
        for c in objects
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"]
    assert all(d["index"] == 0 for d in deltas)
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    finish = [c["choices"][0]["finish_reason"] for c in objects if c["choices"]][-1]
    if finish == "tool_calls":
        assert set(json.loads(arguments)) == {"city"}
    else:
        assert finish == "length" and arguments.startswith("{")


def test_json_schema_through_the_gateway(gw: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    body = json.loads(
        gw.chat.completions.with_raw_response.create(
            model="up/smollm2",
            messages=[{"role": "user", "content": "2+2?"}],
            max_tokens=40,
            temperature=0,  # sampled digits of an integer can run past any max_tokens
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "sum", "schema": schema, "strict": True},
            },
        ).text
    )
    validate("CreateChatCompletionResponse", body)
    assert isinstance(json.loads(body["choices"][0]["message"]["content"])["answer"], int)


def test_store_keeps_the_answer_on_the_gateway_only(
    gw: openai.OpenAI, upstream: Server, scripted: ScriptedUpstream
) -> None:
    completion = gw.chat.completions.create(
        model="up/smollm2", messages=HI, max_tokens=5, store=True, metadata={"team": "blue"}
    )
    stored = gw.chat.completions.retrieve(completion.id)
    assert stored.choices[0].message.content == completion.choices[0].message.content
    assert stored.metadata == {"team": "blue"}
    assert upstream.client(UP_KEY).chat.completions.list().data == []
    gw.chat.completions.create(model="scripted/scripted-1", messages=HI, store=True)
    assert "store" not in scripted.bodies[-1] and "metadata" not in scripted.bodies[-1]


def test_everything_the_client_sent_reaches_the_upstream(
    gw: openai.OpenAI, scripted: ScriptedUpstream
) -> None:
    # fields the local engine refuses are the upstream's to judge
    extra = {
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "web_search_options": {"search_context_size": "low"},
        "reasoning_effort": "high",
        "verbosity": "low",
        "top_k": 5,
        "user": "u-1",
    }
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    raw = gw.chat.completions.with_raw_response.create(
        model="scripted/scripted-1", messages=messages, max_tokens=9, extra_body=extra
    )
    validate("CreateChatCompletionResponse", json.loads(raw.text))
    sent = scripted.bodies[-1]
    assert sent == {"model": "scripted-1", "messages": messages, "max_tokens": 9, **extra}
    # the vendor's headers a client uses come back; chatd's own id and time for the
    # client, the vendor's beside them
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-upstream-request-id"] == "req_scripted"
    assert raw.headers["x-upstream-processing-ms"] == "12"
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"


def test_a_field_the_upstream_refuses_is_its_answer(gateway: Server) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {GW_KEY}"},
        json={"model": "up/smollm2", "messages": HI, "verbosity": "low"},
    )
    assert response.status_code == 400
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == "verbosity"


def test_v4_path_with_x_api_key_or_bearer(gateway: Server) -> None:
    request = {"model": "scripted/scripted-1", "messages": HI}
    for headers in ({"x-api-key": GW_KEY}, {"authorization": f"Bearer {GW_KEY}"}):
        response = httpx.post(
            gateway.url + "/v4/beta/chat/completions", headers=headers, json=request
        )
        assert response.status_code == 200
        validate("CreateChatCompletionResponse", response.json())
    denied = httpx.post(
        gateway.url + "/v4/beta/chat/completions", headers={"x-api-key": "nope"}, json=request
    )
    assert denied.status_code == 401
    validate("ErrorResponse", denied.json())


def test_models_list_every_vendor(gw: openai.OpenAI, gateway: Server) -> None:
    listing = httpx.get(
        gateway.url + "/v1/models", headers={"authorization": f"Bearer {GW_KEY}"}
    ).json()
    validate("ListModelsResponse", listing)
    owners = {m["id"]: m["owned_by"] for m in listing["data"]}
    # scripted's models came from its GET /models at start
    assert owners == {"up/smollm2": "up", "scripted/scripted-1": "scripted", "pool": "chatd"}
    model = gw.models.retrieve("up/smollm2")
    assert model.id == "up/smollm2" and model.owned_by == "up"
    with pytest.raises(openai.NotFoundError):
        gw.models.retrieve("up/nope")


def test_balance_spreads_over_targets(gw: openai.OpenAI) -> None:
    served = {
        gw.chat.completions.create(model="pool", messages=HI, max_tokens=3).model for _ in range(4)
    }
    assert served == {"scripted-1", "smollm2"}


def test_local_model_answers_to_local_prefix(upstream: Server) -> None:
    client = upstream.client(UP_KEY)
    assert {"smollm2", "local/smollm2"} <= {m.id for m in client.models.list()}
    answer = client.chat.completions.create(model="local/smollm2", messages=HI, max_tokens=3)
    assert answer.choices[0].message.content


def test_gateway_metrics(gw: openai.OpenAI, gateway: Server) -> None:
    gw.chat.completions.create(model="up/smollm2", messages=HI, max_tokens=2)
    text = httpx.get(gateway.url + "/metrics").text
    assert 'chatd_upstream_requests_total{model="smollm2",status="200",upstream="up"}' in text
    assert 'chatd_upstream_latency_seconds_count{model="smollm2",upstream="up"}' in text
    assert 'chatd_gateway_overhead_seconds_bucket{le="0.001",model="smollm2",upstream="up"}' in text
    assert 'chatd_upstream_circuit_state{model="smollm2",upstream="up"} 0.0' in text


def sse(server: Server, body: dict[str, object], path: str = "/v1/chat/completions") -> list[str]:
    """The `data:` payloads of a streamed answer, in order."""
    with httpx.stream(
        "POST",
        server.url + path,
        json=body,
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=300,
    ) as response:
        assert response.status_code == 200, response.read()
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
