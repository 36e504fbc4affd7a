"""Generated requests (schemathesis, from GET /openapi.json) against a live chatd."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.fuzz import Fuzzer
from tests.conftest import Server

REQUESTS = 200


def test_openapi_document_is_served_without_a_key(tmp_path: Path) -> None:
    srv = Server(tmp_path, "--api-key", "sk-test", "--ctx", "1024", "--parallel", "1").start()
    try:
        response = httpx.get(srv.url + "/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert httpx.get(srv.url + "/v1/models").status_code == 401
    finally:
        srv.stop()
    assert document["openapi"].startswith("3.1")
    assert sorted(document["paths"]) == [
        "/chat/completions",
        "/chat/completions/{completion_id}",
        "/chat/completions/{completion_id}/messages",
        "/models",
        "/models/{model}",
    ]
    assert "nullable" not in response.text
    request = document["components"]["schemas"]["CreateChatCompletionRequest"]
    properties = {name for branch in request["allOf"] for name in branch.get("properties", {})}
    assert {"messages", "top_k", "min_p", "repetition_penalty", "ignore_eos"} <= properties


def test_fuzz_finds_no_5xx_and_no_response_outside_the_document(tmp_path: Path) -> None:
    # one thread: llama.cpp's two wait on each other at every barrier on a busy machine
    args = ("--model-name", "smollm2", "--parallel", "4", "--ctx", "2048", "--threads", "1")
    srv = Server(tmp_path, *args).start()
    try:
        report = Fuzzer(srv.url, seed=7).run(REQUESTS)
    finally:
        srv.stop()
    print(report.table())
    assert report.requests >= REQUESTS // 2
    assert not [code for code in report.statuses if code >= 500], report.table()
    assert report.failures == [], "\n".join(report.failures[:10])
    assert report.generated > 0 and report.streams > 0, report.table()
