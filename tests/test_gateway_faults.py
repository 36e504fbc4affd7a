"""When upstreams fail: a pure gateway in front of real servers that refuse, hang, push
back, break, reject chatd's key or die mid-answer.

Each failing upstream is a real one on loopback: a port nobody listens on, a socket
that accepts and never answers, a scripted HTTP server (tests/upstreams.py), and a
real `chatd serve` (a wrong key; killed mid-stream; a client that leaves).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.schema import validate
from tests.upstreams import (
    UP_KEY,
    ScriptedUpstream,
    chatd_upstream,
    hanging_socket,
    upstream_table,
)

WRONG_KEY = "sk-wrong-secret-value"
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = chatd_upstream(tmp_path_factory.mktemp("upstream"), parallel=2)
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


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Server,
    scripted: ScriptedUpstream,
    hang_port: int,
) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("gateway")
    refused = f"http://127.0.0.1:{free_port()}/v1"
    config = (
        upstream_table("up", f"{upstream.url}/v1", api_key_env="UP_KEY", models=["smollm2"])
        + upstream_table(
            "wrongkey", f"{upstream.url}/v1", api_key_env="WRONG_KEY", models=["smollm2"]
        )
        + upstream_table("down", refused, max_retries=1)
        + upstream_table("hang", f"http://127.0.0.1:{hang_port}/v1", timeout_s=1, max_retries=0)
        + upstream_table("busy", scripted.url("busy"), max_retries=0)
        + upstream_table("busyonce", scripted.url("busy-once"), max_retries=2)
        + upstream_table(
            "broken",
            scripted.url("broken"),
            max_retries=0,
            circuit_failures=2,
            circuit_cooldown_s=5,
        )
        + upstream_table("html", scripted.url("html"), max_retries=0)
        + upstream_table("partial", scripted.url("partial"))
        + '[[routes]]\nmodel = "fast"\ntargets = ["down/m", "up/smollm2"]\n'
    )
    (data / "chatd.toml").write_text(config)
    srv = Server(
        data,
        "--no-local-model",
        "--config",
        str(data / "chatd.toml"),
        env={"UP_KEY": UP_KEY, "WRONG_KEY": WRONG_KEY},
    ).start()
    yield srv
    srv.stop()


def post(gateway: Server, model: str, **body: object) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": HI, "max_tokens": 4, **body},
        timeout=60,
    )


def error_of(response: httpx.Response) -> dict[str, object]:
    validate("ErrorResponse", response.json())
    return response.json()["error"]


def metric(server: Server, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when absent)."""
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# first in the module: later tests stop and restart servers this one needs quiet
def test_a_client_that_leaves_closes_the_upstream_request(
    gateway: Server, upstream: Server
) -> None:
    running = 'chatd_running_requests{model="smollm2"}'
    body = {"model": "up/smollm2", "messages": HI, "stream": True, "max_tokens": 2000}
    body["ignore_eos"] = True
    url = gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        # a reference held: an iterator dropped mid-stream closes httpx's connection,
        # which is the client leaving too early
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
        # the upstream's stream opens when its job is queued: wait until it runs
        deadline = time.monotonic() + 60
        while upstream_gauge(upstream, running) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream_gauge(upstream, running) == 1
    deadline = time.monotonic() + 10
    while upstream_gauge(upstream, running) != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream_gauge(upstream, running) == 0


def test_connection_refused_is_a_502_naming_the_upstream(gateway: Server) -> None:
    response = post(gateway, "down/m")
    assert response.status_code == 502
    assert "`down`" in error_of(response)["message"]
    assert metric(gateway, "chatd_upstream_retries_total", upstream="down") >= 1


def test_an_upstream_that_hangs_is_a_504(gateway: Server) -> None:
    began = time.monotonic()
    response = post(gateway, "hang/m")
    assert response.status_code == 504
    error = error_of(response)
    assert "`hang`" in error["message"] and "1 s" in error["message"]
    assert time.monotonic() - began < 10


def test_429_with_retry_after_reaches_the_client(gateway: Server) -> None:
    response = post(gateway, "busy/m")
    assert response.status_code == 429
    assert error_of(response)["message"] == "Slow down."
    assert response.headers["retry-after"] == "1"


def test_429_is_retried_after_the_vendors_wait(gateway: Server, scripted: ScriptedUpstream) -> None:
    before = scripted.hits["busy-once"]
    response = post(gateway, "busyonce/m")
    assert response.status_code == 200
    validate("CreateChatCompletionResponse", response.json())
    assert scripted.hits["busy-once"] == before + 2
    assert metric(gateway, "chatd_upstream_retries_total", upstream="busyonce") == 1


def test_a_wrong_key_is_chatds_fault_not_the_clients(gateway: Server) -> None:
    response = post(gateway, "wrongkey/smollm2")
    assert response.status_code == 502
    error = error_of(response)
    assert "`wrongkey`" in error["message"] and error["code"] == "upstream_auth_failed"
    assert WRONG_KEY not in response.text and UP_KEY not in response.text


def test_an_error_page_is_mapped_to_an_error_object(gateway: Server) -> None:
    response = post(gateway, "html/m")
    assert response.status_code == 503
    assert "Service Unavailable" in error_of(response)["message"]


def test_a_route_falls_back_to_its_next_target(gateway: Server) -> None:
    before = metric(gateway, "chatd_upstream_fallbacks_total", upstream="down")
    response = post(gateway, "fast")
    assert response.status_code == 200
    validate("CreateChatCompletionResponse", response.json())
    assert response.json()["model"] == "smollm2"
    assert metric(gateway, "chatd_upstream_fallbacks_total", upstream="down") == before + 1


def test_circuit_breaker_opens_then_probes(gateway: Server, scripted: ScriptedUpstream) -> None:
    scripted.broken = True
    for _ in range(2):
        assert post(gateway, "broken/m").status_code == 500
    hits = scripted.hits["broken"]
    skipped = post(gateway, "broken/m")
    assert skipped.status_code == 503
    assert "circuit open" in error_of(skipped)["message"] and skipped.headers["retry-after"]
    assert scripted.hits["broken"] == hits  # not even tried
    assert metric(gateway, "chatd_upstream_circuit_state", upstream="broken") == 1
    time.sleep(5.2)
    scripted.broken = False
    probe = post(gateway, "broken/m")
    assert probe.status_code == 200 and scripted.hits["broken"] == hits + 1
    assert metric(gateway, "chatd_upstream_circuit_state", upstream="broken") == 0


def stream_lines(gateway: Server, model: str, **body: object) -> list[str]:
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": HI, "stream": True, **body},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_stream_cut_off_upstream_ends_with_an_error_event(gateway: Server) -> None:
    data = stream_lines(gateway, "partial/m")
    assert "[DONE]" not in data
    *chunks, last = (json.loads(d) for d in data)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert "Hello" in "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    validate("ErrorResponse", last)
    assert "`partial`" in last["error"]["message"]


def test_an_upstream_killed_mid_stream(tmp_path_factory: pytest.TempPathFactory) -> None:
    victim = Server(tmp_path_factory.mktemp("victim"), "--model-name", "smollm2").start()
    data = tmp_path_factory.mktemp("gw-victim")
    (data / "chatd.toml").write_text(upstream_table("v", f"{victim.url}/v1", models=["smollm2"]))
    gateway = Server(data, "--no-local-model", "--config", str(data / "chatd.toml")).start()
    try:
        body = {"model": "v/smollm2", "messages": HI, "stream": True, "max_tokens": 400}
        body["ignore_eos"] = True
        url = gateway.url + "/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=120) as response:
            lines = response.iter_lines()
            data_lines = []
            for line in lines:
                if line.startswith("data: "):
                    data_lines.append(line[6:])
                if len(data_lines) == 3:
                    victim.stop(kill=True)
                    break
            data_lines += [line[6:] for line in lines if line.startswith("data: ")]
        assert "[DONE]" not in data_lines
        last = json.loads(data_lines[-1])
        validate("ErrorResponse", last)
        assert "`v`" in last["error"]["message"]
    finally:
        victim.stop(kill=True)
        gateway.stop()


def upstream_gauge(upstream: Server, sample: str) -> float:
    text = httpx.get(upstream.url + "/metrics").text
    match = re.search(re.escape(sample) + r" (\S+)", text)
    return float(match.group(1)) if match else 0.0
