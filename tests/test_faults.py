"""Every failure path of the API layer, driven by a faulty backend over real HTTP.

A backend may refuse a request, fail before or after it started answering, hang, or
send events no backend should: the client must always get a true answer (an error
object, or a stream that ends with an error event and no `[DONE]`), and nothing
half-made is stored.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from chatd.backend import (
    BackendError,
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
from tests.inproc import ThreadServer
from tests.schema import validate

MODES = (
    "ok",
    "refuse",  # BackendError before Start: 503 with Retry-After
    "crash-before",  # an unexpected exception before Start
    "crash-mid",  # an unexpected exception after some text
    "upstream-mid",  # a BackendError (502) after some text
    "end-early",  # returns after some text, no Finish or Usage
    "no-finish",  # Usage but a choice never finished
    "empty",  # no events at all
    "no-start",  # text before Start
    "bad-index",  # an event for a choice that does not exist
    "not-an-event",  # an object that is no event
    "hang",  # some text, then waits for ever
)


class FaultyBackend:
    """A backend whose model name says how it fails."""

    def __init__(self) -> None:
        self.cancelled: dict[str, threading.Event] = {}

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(mode, "test") for mode in MODES]

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        mode = request.model
        tag = request.messages[-1]["content"]
        if mode == "refuse":
            raise BackendError(
                "Busy.", code="busy", status=503, type="server_error", headers={"retry-after": "7"}
            )
        if mode == "crash-before":
            raise RuntimeError("boom")
        if mode == "empty":
            return
        if mode == "no-start":
            yield TextDelta(0, "x")
        yield Start(request.model, "fp_faulty", headers={"x-request-id": "req_faulty"})
        yield TextDelta(0, "Hello")
        yield TextDelta(0, " there")
        if mode == "crash-mid":
            raise RuntimeError("boom")
        if mode == "upstream-mid":
            raise BackendError("The upstream failed.", status=502, type="upstream_error")
        if mode == "end-early":
            return
        if mode == "bad-index":
            yield TextDelta(3, "x")
        if mode == "not-an-event":
            yield "text"  # type: ignore[misc]
        if mode == "hang":
            try:
                await asyncio.Event().wait()
            finally:
                self.cancelled.setdefault(tag, threading.Event()).set()
        if mode != "no-finish":
            yield Finish(0, "stop")
        yield Usage(prompt_tokens=3, completion_tokens=2)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> FaultyBackend:
    return FaultyBackend()


@pytest.fixture(scope="module")
def url(backend: FaultyBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from chatd.api.app import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("faults"))
    with ThreadServer(create_app(settings, lambda _: [backend])) as server:
        yield server.url


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def body(mode: str, **fields: Any) -> dict[str, Any]:
    return {"model": mode, "messages": [{"role": "user", "content": "hi"}], **fields}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    validate("ErrorResponse", response.json())
    return response.json()["error"]


def stream_lines(http: httpx.Client, payload: dict[str, Any]) -> list[str]:
    with http.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line]


def stored_ids(http: httpx.Client, run: str) -> list[str]:
    listing = http.get("/v1/chat/completions", params={"metadata[run]": run}).json()
    return [item["id"] for item in listing["data"]]


def test_a_whole_answer_is_stored_and_streamed_to_done(http: httpx.Client) -> None:
    run = uuid.uuid4().hex
    lines = stream_lines(http, body("ok", stream=True, store=True, metadata={"run": run}))
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        validate("CreateChatCompletionStreamResponse", orjson.loads(line.removeprefix("data: ")))
    assert len(stored_ids(http, run)) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_before_start_is_the_backends_http_error(http: httpx.Client, stream: bool) -> None:
    response = http.post("/v1/chat/completions", json=body("refuse", stream=stream))
    error = error_of(response, 503)
    assert error == {"message": "Busy.", "type": "server_error", "param": None, "code": "busy"}
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("mode", ["crash-before", "empty", "no-start"])
@pytest.mark.parametrize("stream", [False, True])
def test_failure_before_start_is_a_500(http: httpx.Client, mode: str, stream: bool) -> None:
    error = error_of(http.post("/v1/chat/completions", json=body(mode, stream=stream)), 500)
    assert error["type"] == "server_error"


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("crash-mid", 500),
        ("upstream-mid", 502),
        ("end-early", 500),
        ("no-finish", 500),
        ("bad-index", 500),
        ("not-an-event", 500),
    ],
)
def test_failure_after_start(http: httpx.Client, mode: str, status: int) -> None:
    run = uuid.uuid4().hex
    stored = {"store": True, "metadata": {"run": run}}
    error = error_of(http.post("/v1/chat/completions", json=body(mode, **stored)), status)
    assert error["type"] == ("upstream_error" if status == 502 else "server_error")

    lines = stream_lines(http, body(mode, stream=True, **stored))
    assert "data: [DONE]" not in lines
    *chunks, last = (orjson.loads(line.removeprefix("data: ")) for line in lines)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    validate("ErrorResponse", last)
    assert last["error"]["type"] == error["type"]
    assert stored_ids(http, run) == []  # nothing half-saved, streamed or not


@pytest.mark.parametrize("mode", ["crash-mid", "upstream-mid", "end-early"])
def test_sdk_raises_for_a_cut_stream(url: str, mode: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    text = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(**body(mode, stream=True)):
            text.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(text) == "Hello there"


def test_backend_headers_reach_the_client(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=body("ok"))
    assert response.status_code == 200
    # chatd's own request id wins; the backend's is passed on beside it (api/access.py)
    assert response.headers["x-upstream-request-id"] == "req_faulty"
    assert response.headers["x-request-id"] not in ("req_faulty", "")
    validate("CreateChatCompletionResponse", response.json())
    assert response.json()["system_fingerprint"] == "fp_faulty"


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_a_hung_generation(
    url: str, backend: FaultyBackend, stream: bool
) -> None:
    tag = uuid.uuid4().hex
    payload = {"model": "hang", "messages": [{"role": "user", "content": tag}], "stream": stream}
    with httpx.Client(base_url=url, timeout=1) as client, pytest.raises(httpx.ReadTimeout):
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=payload) as response:
                for _ in response.iter_lines():
                    pass
        else:
            client.post("/v1/chat/completions", json=payload)
    assert backend.cancelled.setdefault(tag, threading.Event()).wait(10)
