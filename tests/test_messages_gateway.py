"""The Messages API through the gateway: a pure-gateway chatd whose upstream is the session's
chatd (an OpenAI-kind upstream), answering `/v1/messages` for `up/smollm2`; and the errors
only a server with keys, limits and a small body limit gives, in the Messages API's shape."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import jsonschema
import pytest

from tests import anthropic_schema as shapes
from tests.conftest import Server
from tests.test_messages import ASK_WEATHER, HI, WEATHER, blocks_of, check_error, wire_stream

GW_KEY = "sk-gateway-messages"
SLOW_KEY = "sk-gateway-slow"
MODEL = "up/smollm2"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("messages-gateway")
    config = data / "chatd.toml"
    config.write_text(
        f"""
[serve]
log_level = "warning"

[[upstreams]]
name = "up"
kind = "openai"
base_url = "{server.url}/v1"
models = ["smollm2"]

[[keys]]
name = "gw"
key_env = "GW_KEY"

[[keys]]
name = "slow"
key_env = "SLOW_KEY"
rpm = 1
"""
    )
    env = {"GW_KEY": GW_KEY, "SLOW_KEY": SLOW_KEY, "CHATD_REDIS_URL": ""}
    srv = Server(
        data, "--no-local-model", "--config", str(config), "--max-body-mb", "1", env=env
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def claude(gateway: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=GW_KEY, max_retries=0, timeout=300)


def test_create_and_stream_through_the_gateway(
    claude: anthropic.Anthropic, gateway: Server
) -> None:
    raw = claude.messages.with_raw_response.create(model=MODEL, max_tokens=12, messages=HI)
    body = raw.http_response.json()
    shapes.message(body)
    assert body["content"][0]["text"] and body["usage"]["output_tokens"] > 0
    events = wire_stream(gateway, {"model": MODEL, "max_tokens": 12, "messages": HI}, GW_KEY)
    [block] = blocks_of(events)
    assert block["type"] == "text" and block["text"]
    assert events[-2][1]["usage"]["output_tokens"] > 0


def test_tool_use_through_the_gateway(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        extra_body={"temperature": 0},
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert calls and all(call.name == "get_weather" for call in calls)
    for call in calls:
        jsonschema.validate(call.input, WEATHER["input_schema"])


def test_count_tokens_without_a_tokenizer_is_an_estimate(gateway: Server) -> None:
    response = httpx.post(
        gateway.url + "/v1/messages/count_tokens",
        json={"model": MODEL, "messages": HI},
        headers={"x-api-key": GW_KEY},
    )
    assert response.status_code == 200
    assert shapes.TokenCount.model_validate(response.json()).input_tokens > 0
    assert response.headers["x-chatd-token-count"] == "estimate"


def test_edge_errors_in_the_messages_shape(claude: anthropic.Anthropic, gateway: Server) -> None:
    bad_key = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as unauthorized:
        bad_key.messages.create(model=MODEL, max_tokens=8, messages=HI)
    check_error(unauthorized.value, 401, "authentication_error")
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude.messages.create(model="up/nonesuch", max_tokens=8, messages=HI)
    check_error(unknown.value, 404, "not_found_error")
    huge = [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]
    with pytest.raises(anthropic.APIStatusError) as too_large:
        claude.messages.create(model=MODEL, max_tokens=8, messages=huge)
    check_error(too_large.value, 413, "request_too_large")
    slow = anthropic.Anthropic(base_url=gateway.url, api_key=SLOW_KEY, max_retries=0)
    slow.messages.create(model=MODEL, max_tokens=1, messages=HI)
    with pytest.raises(anthropic.RateLimitError) as limited:
        slow.messages.create(model=MODEL, max_tokens=1, messages=HI)
    check_error(limited.value, 429, "rate_limit_error")
    assert int(limited.value.response.headers["retry-after"]) >= 1
