"""The Messages API when a backend fails (before or after it started answering), and with a
model that reads images: chatd's own app on test backends (tests/test_faults.py,
tests/test_backend_contract.py), since no real model fails on cue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatd.config import Settings
from tests import anthropic_schema as shapes
from tests.inproc import ThreadServer
from tests.test_backend_contract import VisionBackend
from tests.test_faults import FaultyBackend
from tests.test_messages import sse_events


@pytest.fixture(scope="module")
def vision() -> VisionBackend:
    return VisionBackend()


@pytest.fixture(scope="module")
def http(vision: VisionBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from chatd.api.app import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("messages-faults"))
    app = create_app(settings, lambda _: [FaultyBackend(), vision])
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def body(model: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def stream(http: httpx.Client, model: str) -> list[tuple[str, dict[str, Any]]]:
    with http.stream("POST", "/v1/messages", json=body(model, stream=True)) as response:
        assert response.status_code == 200
        events = list(sse_events(response.iter_lines()))
    for kind, data in events:
        shapes.event(kind, data)
    return events


def test_a_complete_answer_ends_with_message_stop(http: httpx.Client) -> None:
    events = stream(http, "ok")
    assert [kind for kind, _ in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2][1]["usage"] == {
        "input_tokens": 3,
        "output_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("crash-mid", "api_error"), ("upstream-mid", "api_error"), ("end-early", "api_error")],
)
def test_a_failure_after_start_ends_the_stream_with_an_error_event(
    http: httpx.Client, mode: str, kind: str
) -> None:
    events = stream(http, mode)
    kinds = [k for k, _ in events]
    assert kinds[0] == "message_start" and "content_block_delta" in kinds
    assert kinds[-1] == "error" and "message_stop" not in kinds
    assert events[-1][1]["error"]["type"] == kind


@pytest.mark.parametrize(
    ("mode", "status", "kind"),
    [
        ("refuse", 529, "overloaded_error"),  # 503 from the backend: Anthropic's overloaded
        ("crash-before", 500, "api_error"),
        ("crash-mid", 500, "api_error"),
        ("end-early", 500, "api_error"),
    ],
)
def test_failures_of_a_whole_answer(http: httpx.Client, mode: str, status: int, kind: str) -> None:
    response = http.post("/v1/messages", json=body(mode))
    assert response.status_code == status, response.text
    assert shapes.error(response.json(), status).error.type == kind
    assert response.json()["request_id"] == response.headers["request-id"]


def test_images_reach_a_model_that_reads_them(http: httpx.Client, vision: VisionBackend) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
    }
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    content = [{"type": "text", "text": "What is this?"}, image, url]
    payload = {**body("vendor/vision"), "messages": [{"role": "user", "content": content}]}
    response = http.post("/v1/messages", json=payload)
    assert response.status_code == 200, response.text
    shapes.message(response.json())
    parts = vision.seen[-1].messages[-1]["content"]
    assert [part.get("image_url", {}).get("url") for part in parts[1:]] == [
        "data:image/png;base64,aGk=",
        "https://example.com/cat.png",
    ]
