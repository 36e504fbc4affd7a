"""The Responses API on a gateway model through the `Backend` contract: the request reaches
an OpenAI-kind upstream (`relay_responses = false`) as Chat Completions, and its failures
end streams as the Responses API ends them. The upstream is a scripted HTTP server
(tests/upstreams.py). tests/test_responses_relay.py relays to an upstream's own API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server
from tests.schema import validate_responses
from tests.test_responses import sse_events
from tests.upstreams import ScriptedUpstream


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream
) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("responses-gateway")
    config = data / "chatd.toml"
    config.write_text(
        f"""
[[upstreams]]
name = "ok"
kind = "openai"
base_url = "{scripted.url("ok")}"
models = ["scripted-1"]
relay_responses = false

[[upstreams]]
name = "partial"
kind = "openai"
base_url = "{scripted.url("partial")}"
models = ["scripted-1"]
max_retries = 0
relay_responses = false
"""
    )
    srv = Server(data, "--no-local-model", "--config", str(config)).start()
    yield srv
    srv.stop()


def test_gateway_model_answers(gateway: Server, scripted: ScriptedUpstream) -> None:
    client = gateway.client()
    raw = client.responses.with_raw_response.create(
        model="ok/scripted-1",
        instructions="Be kind.",
        input="Hi",
        max_output_tokens=20,
        metadata={"run": "gw"},
    )
    body = raw.http_response.json()
    validate_responses("Response", body)
    assert body["status"] == "completed" and body["model"] == "scripted-1"
    assert raw.parse().output_text == "Hello there"
    assert body["usage"]["input_tokens"] == 5 and body["usage"]["output_tokens"] == 2
    sent = scripted.bodies[-1]
    assert sent["model"] == "scripted-1" and sent["max_completion_tokens"] == 20
    assert sent["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert "store" not in sent and "metadata" not in sent
    # stored by chatd, chained by chatd
    second = client.responses.create(
        model="ok/scripted-1", input="Again", previous_response_id=body["id"]
    )
    assert second.output_text == "Hello there"
    assert [m["role"] for m in scripted.bodies[-1]["messages"]] == ["user", "assistant", "user"]


def test_upstream_failure_mid_stream(gateway: Server) -> None:
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        events = sse_events(
            http,
            "POST",
            "/v1/responses",
            json={"model": "partial/scripted-1", "input": "Hi", "stream": True},
        )
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "Hello"
    # a failed stream is not stored
    with pytest.raises(openai.NotFoundError):
        gateway.client().responses.retrieve(failed["id"])
