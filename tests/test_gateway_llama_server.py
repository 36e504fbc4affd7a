"""llama.cpp's `llama-server` as an OpenAI-kind upstream of a pure-gateway `chatd serve`.

A third-party Chat Completions server: what it answers must reach the SDK client as
valid OpenAI objects, streams relayed chunk by chunk with usage only when asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Server
from tests.llama_server import LlamaServer
from tests.schema import validate

HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with LlamaServer(tmp_path_factory.mktemp("llama-server")) as llama:
        data = tmp_path_factory.mktemp("gateway")
        (data / "chatd.toml").write_text(
            f'[[upstreams]]\nname = "llama"\nkind = "openai"\nbase_url = "{llama.url}/v1"\n'
            'models = ["smollm2"]\n'
        )
        srv = Server(data, "--no-local-model", "--config", str(data / "chatd.toml")).start()
        yield srv
        srv.stop()


def test_plain_answer_from_llama_server(gateway: Server) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model="llama/smollm2", messages=HI, max_tokens=8, logprobs=True, top_logprobs=2
    )
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["message"]["content"] and choice["finish_reason"] in ("stop", "length")
    assert choice["logprobs"]["content"]
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_from_llama_server(gateway: Server, include_usage: bool) -> None:
    body: dict[str, object] = {
        "model": "llama/smollm2",
        "messages": HI,
        "max_tokens": 8,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, timeout=300
    ) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert bool(usage) is include_usage
    if include_usage:
        assert usage[-1]["completion_tokens"] > 0
