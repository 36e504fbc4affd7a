"""Generated requests (schemathesis, from GET /openapi.json) against a live chatd."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.fuzz import Fuzzer
from tests.conftest import Server
from tests.schema import validate
from tests.store_support import drop_database, fresh_pg_database

REQUESTS = 200  # ~90 s on a quiet 2-core machine; bench.fuzz runs 10,000


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
        "/responses",
        "/responses/{response_id}",
        "/responses/{response_id}/cancel",
        "/responses/{response_id}/input_items",
    ]
    assert "nullable" not in response.text
    request = document["components"]["schemas"]["CreateChatCompletionRequest"]
    properties = {name for branch in request["allOf"] for name in branch.get("properties", {})}
    assert {"messages", "top_k", "min_p", "repetition_penalty", "ignore_eos"} <= properties


@pytest.mark.timeout(900)  # generation is slow on a busy machine; not a speed test
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


def test_null_characters_get_4xx_on_postgresql(tmp_path: Path) -> None:
    """PostgreSQL's text holds no NUL: ids, cursors and metadata with one never reach it."""
    url = fresh_pg_database()
    args = ("--model-name", "smollm2", "--parallel", "1", "--ctx", "1024", "--threads", "1")
    srv = Server(tmp_path, *args, "--database-url", url).start()
    base = srv.url + "/v1/chat/completions"
    try:
        with httpx.Client(timeout=120) as http:
            made = http.post(
                base,
                json={
                    "model": "smollm2",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 2,
                    "store": True,
                },
            ).json()["id"]
            answers = {
                "GET id": http.get(base + "/a%00b"),
                "POST id": http.post(base + "/a%00b", json={"metadata": {}}),
                "DELETE id": http.delete(base + "/a%00b"),
                "GET messages": http.get(base + "/a%00b/messages"),
                "GET after": http.get(base, params={"after": "a\x00b"}),
                "GET messages after": http.get(f"{base}/{made}/messages", params={"after": "\x00"}),
                "GET metadata": http.get(base, params={"metadata[k]": "\x00"}),
                "POST metadata": http.post(f"{base}/{made}", json={"metadata": {"k\x00": "v"}}),
                "create metadata": http.post(
                    base,
                    json={
                        "model": "smollm2",
                        "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 2,
                        "store": True,
                        "metadata": {"k": "\x00"},
                    },
                ),
            }
            models = http.get(base, params={"model": "a\x00b"})
    finally:
        srv.stop()
        drop_database(url)
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "GET id": 404,
        "POST id": 404,
        "DELETE id": 404,
        "GET messages": 404,
        "GET after": 404,
        "GET messages after": 400,
        "GET metadata": 400,
        "POST metadata": 400,
        "create metadata": 400,
    }
    for response in answers.values():
        validate("ErrorResponse", response.json())
    assert answers["POST metadata"].json()["error"]["param"] == "metadata.k\x00"
    assert (models.status_code, models.json()["data"]) == (200, [])
