"""What the server tells a person: the banner, the access log, request ids, /metrics."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import llama_cpp
import openai
import pytest

from chatd.backend import (
    Capabilities,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    Start,
    TextDelta,
    Usage,
)
from chatd.config import Settings
from tests.conftest import ROOT, Server, free_port
from tests.inproc import ThreadServer
from tests.schema import validate

KEY = "sk-obs-secret-key-1234"
SECRET_PROMPT = "Zanzibar-pelican-7781 says"
GENERATED_ID = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("obs-text"),
        "--model-name",
        "smollm2",
        "--parallel",
        "2",
        "--ctx",
        "2048",
        "--gpu-layers",
        "4",
        threads=1,
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("obs-json"),
        "--model-name",
        "smollm2",
        "--parallel",
        "2",
        "--ctx",
        "2048",
        "--api-key",
        KEY,
        env={"CHATD_LOG_FORMAT": "json"},
        threads=1,
    ).start()
    yield srv
    srv.stop()


def banner(server: Server) -> dict[str, str]:
    """The banner's `name  value` rows."""
    lines = server.log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"chatd \S+ is ready", line))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        name, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        rows[name] = value
    return rows


def access_line(server: Server, request_id: str, timeout: float = 10) -> str:
    """The log line that names `request_id` (written once the answer is sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log.read_text().splitlines():
            if request_id in line and ("request_id=" in line or '"request_id"' in line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")


def text_fields(line: str) -> dict[str, str]:
    """`<time> METHOD PATH STATUS key=value ...` -> its fields."""
    stamp, method, path, status, *pairs = line.split(" ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    fields = dict(pair.split("=", 1) for pair in pairs)
    return {"method": method, "path": path, "status": status, **fields}


def chat_body(stream: bool = False) -> dict[str, object]:
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "max_tokens": 4,
        "stream": stream,
    }


# -- the banner -----------------------------------------------------------------------


def test_banner_names_model_context_threads_slots_urls(text_server: Server) -> None:
    rows = banner(text_server)
    assert "smollm2" in rows["models"].split(", ")
    assert rows["model file"].endswith("MiB)") and ".gguf" in rows["model file"]
    assert rows["context"].startswith("2048 tokens shared by 2 parallel sequences")
    assert re.fullmatch(r"\d+\.\d s", rows["model load"])
    assert re.search(r"migrated in \d+\.\d s", rows["store"])
    assert rows["api"] == f"{text_server.url}/v1"
    assert rows["chat page"] == f"{text_server.url}/"
    assert rows["metrics"] == f"{text_server.url}/metrics"
    assert rows["keys"] == "none needed"


def test_banner_names_the_compute_backend_and_offloaded_layers(text_server: Server) -> None:
    compute = banner(text_server)["compute"]
    backends, threads, layers = compute.split(", ")
    assert threads == "1 thread"
    assert "CPU" in backends.split(" + ")
    offloaded, total = map(int, re.fullmatch(r"(\d+) of (\d+) layers .*", layers).groups())
    # --gpu-layers 4 reaches llama.cpp: 4 layers on a GPU build, none on a CPU-only one
    assert offloaded == (4 if llama_cpp.llama_supports_gpu_offload() else 0)
    assert total > 4


def test_banner_curl_line_runs_as_pasted(text_server: Server) -> None:
    line = banner(text_server)["try"]
    assert line.startswith(f"curl {text_server.url}/v1/chat/completions")
    out = subprocess.run(["bash", "-c", line], capture_output=True, timeout=120, check=True)
    completion = json.loads(out.stdout)
    validate("CreateChatCompletionResponse", completion)
    assert completion["model"] == "smollm2"


# -- the access log, request ids, processing time ------------------------------------------


def test_access_line_for_a_completion_with_the_clients_request_id(text_server: Server) -> None:
    response = httpx.post(
        text_server.url + "/v1/chat/completions",
        json=chat_body(),
        headers={"x-request-id": "client-id_1.2"},
        timeout=120,
    )
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert response.headers["x-request-id"] == "client-id_1.2"
    assert int(response.headers["openai-processing-ms"]) >= 0
    line = access_line(text_server, "request_id=client-id_1.2")
    fields = text_fields(line)
    assert fields["method"] == "POST" and fields["path"] == "/v1/chat/completions"
    assert fields["status"] == "200" and fields["model"] == "smollm2"
    assert int(fields["prompt_tokens"]) == usage["prompt_tokens"]
    assert int(fields["completion_tokens"]) == usage["completion_tokens"]
    assert 0 <= int(fields["ttft_ms"]) <= int(fields["total_ms"])
    content = response.json()["choices"][0]["message"]["content"]
    assert SECRET_PROMPT not in line and (not content.strip() or content not in line)


def test_a_request_id_is_generated_when_absent_or_unfit(text_server: Server) -> None:
    for sent in (None, "has spaces in it", "x" * 200, "na\xefve".encode("latin-1")):
        headers: dict[str, str | bytes] = {} if sent is None else {"x-request-id": sent}
        response = httpx.get(text_server.url + "/v1/models", headers=headers, timeout=30)
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        assert GENERATED_ID.fullmatch(request_id), request_id
        fields = text_fields(access_line(text_server, f"request_id={request_id}"))
        assert (fields["method"], fields["path"], fields["status"]) == ("GET", "/v1/models", "200")
        assert fields["model"] == fields["ttft_ms"] == "-"


def test_every_answer_has_an_id_and_processing_time(text_server: Server) -> None:
    for method, path, body, status in (
        ("GET", "/health", None, 200),
        ("GET", "/nowhere", None, 404),
        ("POST", "/v1/chat/completions", {"model": "smollm2"}, 400),
        ("POST", "/v1/chat/completions", {**chat_body(), "model": "nope"}, 404),
    ):
        response = httpx.request(method, text_server.url + path, json=body, timeout=30)
        assert response.status_code == status
        request_id = response.headers["x-request-id"]
        assert GENERATED_ID.fullmatch(request_id)
        assert response.headers["openai-processing-ms"].isdigit()
        fields = text_fields(access_line(text_server, f"request_id={request_id}"))
        assert (fields["path"], fields["status"]) == (path, str(status))


def test_a_stream_is_logged_when_it_ends(text_server: Server) -> None:
    client = text_server.client()
    stream = client.chat.completions.with_raw_response.create(
        **chat_body(stream=True),  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    request_id = stream.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    chunks = list(stream.parse())
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    usage = chunks[-1].usage
    assert usage is not None
    fields = text_fields(access_line(text_server, f"request_id={request_id}"))
    # the usage is known only once the stream has ended
    assert int(fields["completion_tokens"]) == usage.completion_tokens
    assert int(fields["prompt_tokens"]) == usage.prompt_tokens
    assert int(fields["ttft_ms"]) <= int(fields["total_ms"])
    # the head went out before the generation ended
    assert int(stream.headers["openai-processing-ms"]) <= int(fields["total_ms"])


def test_json_log_is_one_object_per_line_without_keys_or_prompts(json_server: Server) -> None:
    client = json_server.client(api_key=KEY)
    response = client.chat.completions.with_raw_response.create(
        **chat_body(),  # type: ignore[arg-type]
        extra_headers={"x-request-id": "json-test-1"},
    )
    completion = response.parse()
    assert response.headers["x-request-id"] == "json-test-1"
    refused = httpx.get(
        json_server.url + "/v1/models", headers={"authorization": "Bearer wrong"}, timeout=30
    )
    assert refused.status_code == 401
    refused_id = refused.headers["x-request-id"]
    access_line(json_server, refused_id)
    record = json.loads(access_line(json_server, "json-test-1"))
    assert record["method"] == "POST" and record["path"] == "/v1/chat/completions"
    assert record["status"] == 200 and record["model"] == "smollm2"
    assert completion.usage is not None
    assert record["prompt_tokens"] == completion.usage.prompt_tokens
    assert record["completion_tokens"] == completion.usage.completion_tokens
    assert isinstance(record["ttft_ms"], int) and isinstance(record["total_ms"], int)
    assert json.loads(access_line(json_server, refused_id))["status"] == 401
    text = json_server.log.read_text()
    assert KEY not in text and "wrong" not in text and SECRET_PROMPT not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    ready = next(r for r in records if r.get("event") == "ready")
    assert "smollm2" in ready["models"] and ready["api"] == f"{json_server.url}/v1"
    assert "$CHATD_API_KEY" in ready["try"] and ready["keys"] == "1 API keys"


class UpstreamBackend:
    """A gateway-like backend whose upstream sends its own request id."""

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("vendor/up", "vendor")]

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        headers = {"x-request-id": "upstream-42", "openai-processing-ms": "7"}
        yield Start(request.model, "fp_up", headers=headers)
        yield TextDelta(0, "hi")
        yield Finish(0, "stop")
        yield Usage(prompt_tokens=3, completion_tokens=1)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("stream", [False, True])
def test_chatds_request_id_wins_over_an_upstreams(tmp_path: Path, stream: bool) -> None:
    from chatd.api.app import create_app

    app = create_app(Settings(data_dir=tmp_path), lambda _: [UpstreamBackend()])
    with ThreadServer(app) as srv:
        body = {"model": "vendor/up", "messages": [{"role": "user", "content": "x"}]}
        response = httpx.post(
            srv.url + "/v1/chat/completions", json={**body, "stream": stream}, timeout=30
        )
    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])
    assert response.headers["x-upstream-request-id"] == "upstream-42"
    assert response.headers["x-upstream-processing-ms"] == "7"
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]


# -- /metrics and the dashboard ---------------------------------------------------------


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\bchatd_[a-z_]+", expr)}


def test_dashboard_and_docs_name_only_metrics_that_exist(text_server: Server) -> None:
    httpx.post(text_server.url + "/v1/chat/completions", json=chat_body(), timeout=120)
    exposition = httpx.get(text_server.url + "/metrics", timeout=30).text
    served = set(re.findall(r"^(chatd_[a-z_]+)", exposition, flags=re.MULTILINE))
    for name in dashboard_metrics():
        assert name in served, f"the dashboard uses {name}, which /metrics does not serve"
    documented = (ROOT / "docs" / "metrics.md").read_text()
    families = set(re.findall(r"^# TYPE (chatd_[a-z_]+)", exposition, flags=re.MULTILINE))
    for family in families:
        assert f"`{family}" in documented, f"{family} is not in docs/metrics.md"
    assert {"chatd_time_to_first_token_seconds", "chatd_http_requests_total"} <= families


def test_metrics_count_requests_by_route_and_status(text_server: Server) -> None:
    httpx.get(text_server.url + "/nowhere", timeout=30)
    exposition = httpx.get(text_server.url + "/metrics", timeout=30).text
    assert 'chatd_http_requests_total{method="GET",route="other",status="404"}' in exposition
    assert re.search(
        r'chatd_time_to_first_token_seconds_count\{model="smollm2"\} [1-9]', exposition
    )


# -- errors a person hits first -----------------------------------------------------------


def failed_start(tmp_path: Path, *args: str, port: int | None = None) -> str:
    """`chatd serve ARGS`'s stderr, asserting that it failed with one line, no traceback."""
    cmd = ["chatd.cli", "serve", "--port", str(port or free_port()), "--data-dir", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", *cmd, "--threads", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("chatd: ")
    return lines[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        line = failed_start(tmp_path, port=busy.getsockname()[1])
    assert "already in use" in line and "--port" in line


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    line = failed_start(tmp_path, "--model", str(tmp_path / "missing.gguf"))
    assert "no such file" in line and "missing.gguf" in line


def test_model_that_is_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "x.gguf"
    fake.write_text("this is a text file, not a model\n")
    line = failed_start(tmp_path, "--model", str(fake))
    assert "not a GGUF file" in line


def test_gguf_that_llama_cpp_cannot_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    line = failed_start(tmp_path, "--model", str(broken))
    assert "could not load" in line


def test_database_that_cannot_be_reached(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = f"postgresql+asyncpg://chatd:hunter2@127.0.0.1:{closed}/chatd"
    line = failed_start(tmp_path, "--database-url", url)
    assert "cannot use the database" in line and "--database-url" in line
    assert "hunter2" not in line


def test_model_too_big_for_memory(tmp_path: Path) -> None:
    from chatd.preflight import StartupError, available_memory, check_fits_memory

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 4096)
    check_fits_memory(model, available=1 << 20)
    check_fits_memory(model, available=None)  # unknown: no check
    with pytest.raises(StartupError, match=r"needs about .* GiB of memory but only"):
        check_fits_memory(model, available=1024)
    available = available_memory()
    assert available is None or available > 0


def test_openai_client_sees_the_request_id(text_server: Server) -> None:
    """The SDK's own `_request_id` is the header chatd sends."""
    client: openai.OpenAI = text_server.client()
    completion = client.chat.completions.create(**chat_body())  # type: ignore[call-overload]
    assert GENERATED_ID.fullmatch(completion._request_id or "")
