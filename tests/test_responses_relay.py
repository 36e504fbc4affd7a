"""The Responses API relayed to an OpenAI-kind upstream's own `/v1/responses`.

The upstream is another chatd (which serves the Responses API itself, behind its own
key); the client is the official `openai` SDK against a pure gateway. A relayed response
lives in the upstream's store (the upstream's key retrieves it there), and the gateway
reaches it only for the key that created it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, free_port
from tests.schema import validate, validate_event, validate_responses
from tests.test_gateway_faults import upstream_gauge
from tests.test_responses import sse_events
from tests.upstreams import (
    UP_KEY,
    ScriptedUpstream,
    chatd_upstream,
    hanging_socket,
    upstream_table,
)

GW_KEY, OTHER_KEY, LIMITED_KEY = "sk-gateway-a", "sk-gateway-b", "sk-gateway-limited"
WRONG_KEY = "sk-wrong-secret-value"
SHORT = {"max_output_tokens": 16, "temperature": 0}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = chatd_upstream(tmp_path_factory.mktemp("relay-upstream"), parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def hang_port() -> Iterator[int]:
    with hanging_socket() as port:
        yield port


def faulty(name: str, base_url: str, timeout_s: int = 30) -> str:
    return upstream_table(name, base_url, max_retries=0, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Server,
    scripted: ScriptedUpstream,
    hang_port: int,
) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("relay-gateway")
    config = data / "chatd.toml"
    faults = (
        faulty("down", f"http://127.0.0.1:{free_port()}/v1")
        + faulty("hang", f"http://127.0.0.1:{hang_port}/v1", timeout_s=1)
        + faulty("busy", scripted.url("busy"))
        + faulty("partial", scripted.url("partial"))
    )
    config.write_text(
        faults
        + f"""
[[upstreams]]
name = "up"
kind = "openai"
base_url = "{upstream.url}/v1"
api_key_env = "UP_KEY"
models = ["smollm2"]

[[upstreams]]
name = "wrongkey"
kind = "openai"
base_url = "{upstream.url}/v1"
api_key_env = "WRONG_KEY"
models = ["smollm2"]
max_retries = 0

[[routes]]
model = "pair"
targets = ["up/smollm2", "wrongkey/smollm2"]

[[keys]]
name = "limited"
key_sha256 = "{hashlib.sha256(LIMITED_KEY.encode()).hexdigest()}"
rpm = 2
models = ["up/smollm2"]
"""
    )
    srv = Server(
        data,
        "--no-local-model",
        "--config",
        str(config),
        "--api-key",
        GW_KEY,
        "--api-key",
        OTHER_KEY,
        env={"UP_KEY": UP_KEY, "WRONG_KEY": WRONG_KEY},
    )
    srv.start()
    yield srv
    srv.stop()


def client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def gw(gateway: Server) -> openai.OpenAI:
    return client(gateway, GW_KEY)


@pytest.fixture(scope="module")
def other(gateway: Server) -> openai.OpenAI:
    return client(gateway, OTHER_KEY)


@pytest.fixture(scope="module")
def up(upstream: Server) -> openai.OpenAI:
    return client(upstream, UP_KEY)


def test_create_retrieve_chain_delete_through_the_relay(
    gw: openai.OpenAI, other: openai.OpenAI, up: openai.OpenAI
) -> None:
    raw = gw.responses.with_raw_response.create(model="up/smollm2", input="Say hi.", **SHORT)
    body = raw.http_response.json()
    validate_responses("Response", body)
    assert "x-chatd-overhead-ms" in raw.http_response.headers
    assert body["model"] == "smollm2"
    # the upstream's own response: its store has it, its key retrieves it
    held = up.responses.retrieve(body["id"])
    assert held.id == body["id"] and held.output_text == raw.parse().output_text
    mine = gw.responses.with_raw_response.retrieve(body["id"]).http_response.json()
    validate_responses("Response", mine)
    assert mine["id"] == body["id"] and mine["output"] == body["output"]
    path = f"/responses/{body['id']}/input_items"
    items = gw.get(path, cast_to=httpx.Response).json()
    validate_responses("ResponseItemList", items)
    assert items == up.get(path, cast_to=httpx.Response).json()
    assert [i.id for i in gw.responses.input_items.list(body["id"])] == [
        item["id"] for item in items["data"]
    ]

    second = gw.responses.create(
        model="up/smollm2", previous_response_id=body["id"], input="Again.", **SHORT
    )
    assert up.responses.retrieve(second.id).previous_response_id == body["id"]

    # another key of the gateway: chatd's 404, although the upstream holds the response
    for call in (
        lambda: other.responses.retrieve(body["id"]),
        lambda: other.responses.input_items.list(body["id"]),
        lambda: other.responses.delete(body["id"]),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as found:
        other.responses.create(
            model="up/smollm2", previous_response_id=body["id"], input="Mine?", **SHORT
        )
    error = found.value.response.json()
    validate("ErrorResponse", error)
    assert error["error"]["param"] == "previous_response_id"

    deleted = gw.delete(f"/responses/{second.id}", cast_to=httpx.Response).json()
    assert deleted == {"id": second.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        up.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        gw.responses.retrieve(second.id)
    assert up.responses.retrieve(body["id"]).id == body["id"]  # only the one deleted


def test_stream_is_relayed_and_recorded(
    gateway: Server, gw: openai.OpenAI, up: openai.OpenAI
) -> None:
    headers = {"authorization": f"Bearer {GW_KEY}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as http:
        events = sse_events(
            http,
            "POST",
            "/v1/responses",
            json={"model": "up/smollm2", "input": "Count to three.", "stream": True, **SHORT},
        )
        kinds = [e["type"] for e in events]
        assert kinds[0] == "response.created" and kinds[-1] in (
            "response.completed",
            "response.incomplete",
        )
        rid = events[0]["response"]["id"]
        final = events[-1]["response"]
        assert up.responses.retrieve(rid).output_text == output_text(final)
        assert gw.responses.retrieve(rid).output_text == output_text(final)
        replayed = sse_events(http, "GET", f"/v1/responses/{rid}", params={"stream": "true"})
    assert replayed[-1]["response"]["id"] == rid

    # the SDK's stream, chained on the streamed response
    sdk_events = list(
        gw.responses.create(
            model="up/smollm2", previous_response_id=rid, input="Go on.", stream=True, **SHORT
        )
    )
    assert sdk_events[0].type == "response.created"
    assert sdk_events[-1].type in ("response.completed", "response.incomplete")
    chained = sdk_events[0].response.id
    assert up.responses.retrieve(chained).previous_response_id == rid


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


def test_a_chain_stays_where_it_began(gw: openai.OpenAI) -> None:
    local = gw.responses.create(model="pair", input="Hi.", **SHORT)  # a route: the contract
    relayed = gw.responses.create(model="up/smollm2", input="Hi.", **SHORT)
    for model, previous in (("up/smollm2", local.id), ("pair", relayed.id)):
        with pytest.raises(openai.BadRequestError) as refused:
            gw.responses.create(model=model, previous_response_id=previous, input="x", **SHORT)
        error = refused.value.response.json()
        validate("ErrorResponse", error)
        assert error["error"]["param"] == "previous_response_id"


def test_the_upstream_judges_features_chatd_checks_the_shape(gateway: Server) -> None:
    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            gateway.url + "/v1/responses",
            json={"model": "wrongkey/smollm2", "input": "Hi.", **body},
            headers={"authorization": f"Bearer {GW_KEY}"},
            timeout=60,
        )

    # a malformed body never costs a round trip (that upstream would answer 502)
    bad = post({"input": 5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    validate("ErrorResponse", bad.json())
    # a hosted tool is the upstream's to judge: it reaches it, which rejects chatd's key
    hosted = post({"tools": [{"type": "web_search"}]})
    assert hosted.status_code == 502
    error = hosted.json()
    validate("ErrorResponse", error)
    assert "`wrongkey`" in error["error"]["message"]
    assert error["error"]["code"] == "upstream_auth_failed"
    assert WRONG_KEY not in hosted.text and UP_KEY not in hosted.text


def test_background_and_cancel_are_relayed(gw: openai.OpenAI, up: openai.OpenAI) -> None:
    queued = gw.responses.create(
        model="up/smollm2", input="Tell a long story.", background=True, max_output_tokens=256
    )
    assert queued.status in ("queued", "in_progress")
    assert up.responses.retrieve(queued.id).background is True
    try:
        cancelled = gw.responses.cancel(queued.id)
        assert cancelled.status == "cancelled"
    except openai.BadRequestError as exc:  # it finished first: the upstream's own refusal
        error = exc.response.json()
        validate("ErrorResponse", error)
        assert "Cannot cancel" in error["error"]["message"]
    assert gw.responses.retrieve(queued.id).status == up.responses.retrieve(queued.id).status


def post(gateway: Server, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/responses",
        json={"input": "Hi.", **body},
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("down/m", 502, "could not be reached"),
        ("hang/m", 504, "did not answer within 1 s"),
        ("busy/m", 429, "Slow down."),
    ],
)
def test_upstream_failures_map_as_for_chat(
    gateway: Server, model: str, status: int, words: str
) -> None:
    response = post(gateway, {"model": model})
    assert response.status_code == status
    error = response.json()
    validate("ErrorResponse", error)
    assert words in error["error"]["message"]
    if status == 429:
        assert response.headers["retry-after"] == "1"
    else:
        assert f"`{model.split('/')[0]}`" in error["error"]["message"]


def test_a_stream_cut_short_ends_with_an_error_event(gateway: Server) -> None:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/responses",
        json={"model": "partial/m", "input": "Hi.", "stream": True},
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"Hello"' in lines[-2]  # the upstream's bytes, as they came
    last = json.loads(lines[-1][len("data: ") :])
    validate_event(last)
    assert last["type"] == "error" and "ended before" in last["message"]


def test_a_client_that_leaves_closes_the_upstream_request(
    gateway: Server, upstream: Server
) -> None:
    running = 'chatd_running_requests{model="smollm2"}'
    body = {
        "model": "up/smollm2",
        "input": "Write a very long story about dragons, in many chapters.",
        "stream": True,
        "max_output_tokens": 2000,
    }
    with httpx.stream(
        "POST",
        gateway.url + "/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()  # a reference held: dropped, it closes the connection
        while "response.output_text.delta" not in next(lines):
            pass
        assert upstream_gauge(upstream, running) == 1
    deadline = time.monotonic() + 10
    while upstream_gauge(upstream, running) != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream_gauge(upstream, running) == 0


def test_key_limits_and_allow_list_hold_on_the_relay(gateway: Server) -> None:
    limited = client(gateway, LIMITED_KEY)
    with pytest.raises(openai.NotFoundError) as hidden:
        limited.responses.create(model="pair", input="Hi.", **SHORT)
    assert hidden.value.response.json()["error"]["code"] == "model_not_found"
    made = limited.responses.with_raw_response.create(model="up/smollm2", input="Hi.", **SHORT)
    assert made.headers["x-ratelimit-limit-requests"] == "2"  # chatd's, not the upstream's
    with pytest.raises(openai.RateLimitError) as refused:
        limited.responses.create(model="up/smollm2", input="Hi.", **SHORT)
    error = refused.value.response.json()
    validate("ErrorResponse", error)
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert limited.responses.retrieve(made.parse().id).id == made.parse().id  # only POSTs count


def relayed_requests(gateway: Server, status: str) -> float:
    """chatd_upstream_requests_total of upstream `up` with this status, all models."""
    total = 0.0
    for line in httpx.get(gateway.url + "/metrics").text.splitlines():
        ours = 'upstream="up"' in line and f'status="{status}"' in line
        if line.startswith("chatd_upstream_requests_total{") and ours:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_relayed_requests_count_in_the_upstream_metrics(gateway: Server, gw: openai.OpenAI) -> None:
    before = relayed_requests(gateway, "200")
    made = gw.responses.create(model="up/smollm2", input="Say hi.", **SHORT)
    gw.responses.retrieve(made.id)
    assert relayed_requests(gateway, "200") == before + 2
