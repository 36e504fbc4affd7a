"""SIGTERM drains: new requests get 503, running streams finish or are cut at --drain-s, exit 0."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MODEL, Server
from tests.schema import validate


def start_stream(server: Server, body: dict[str, Any]) -> tuple[threading.Thread, list[str]]:
    """A stream read in a thread, returned once its first chunk came."""
    lines: list[str] = []
    started = threading.Event()
    thread = threading.Thread(target=stream_lines, args=(server, body, lines, started))
    thread.start()
    assert started.wait(120)
    return thread, lines


def stream_lines(
    server: Server, body: dict[str, Any], lines: list[str], started: threading.Event
) -> None:
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                lines.append(line)
                started.set()


def events_of(lines: list[str]) -> list[str]:
    assert all(line.startswith("data: ") for line in lines)
    return [line.removeprefix("data: ") for line in lines]


def assert_refused(server: Server) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    refused = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    validate("ErrorResponse", refused.json())
    assert refused.json()["error"]["code"] == "server_shutting_down"


def test_sigterm_lets_running_streams_finish(tmp_path: Path) -> None:
    server = Server(tmp_path, "--model-name", MODEL, "--drain-s", "120")
    server.start()
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
            "ignore_eos": True,
            "store": True,
        }
        thread, lines = start_stream(server, body)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert thread.is_alive()
        assert_refused(server)
        thread.join(150)
        *chunks, done = events_of(lines)
        assert done == "[DONE]"
        for chunk in chunks:
            validate("CreateChatCompletionStreamResponse", json.loads(chunk))
        assert json.loads(chunks[-1])["choices"][0]["finish_reason"] == "length"
        assert server.proc.wait(timeout=30) == 0
        server.proc = None

        server.start()  # the store was closed cleanly: the stream's completion is there
        listed = httpx.get(server.url + "/v1/chat/completions", params={"model": MODEL}).json()
        assert [c["id"] for c in listed["data"]] == [json.loads(chunks[0])["id"]]
    finally:
        server.stop()


def test_streams_past_the_drain_are_cut_with_an_error_event(tmp_path: Path) -> None:
    server = Server(tmp_path, "--model-name", MODEL, "--drain-s", "1")
    server.start()
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell a very long story."}],
            "max_tokens": 4000,
            "ignore_eos": True,
        }
        thread, lines = start_stream(server, body)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert_refused(server)
        thread.join(60)
        assert not thread.is_alive()
        *chunks, last = events_of(lines)
        error = json.loads(last)
        validate("ErrorResponse", error)
        assert error["error"]["code"] == "server_shutting_down"
        assert "[DONE]" not in chunks
        for chunk in chunks:
            assert json.loads(chunk)["choices"][0]["finish_reason"] is None
        assert server.proc.wait(timeout=30) == 0
        server.proc = None
    finally:
        server.stop()
