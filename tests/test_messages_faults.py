"""The Messages API when a backend fails (before or after it started answering), and with a
model that reads images: chatd's own app on test backends (tests/test_faults.py,
tests/test_backend_contract.py), since no real model fails on cue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "x"])},
    optional={
        "text": JSON,
        "id": JSON,
        "name": JSON,
        "input": JSON,
        "tool_use_id": JSON,
        "content": JSON,
        "source": JSON,
    },
)
TURN = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"])},
    optional={"content": st.text(max_size=5) | st.lists(BLOCK, max_size=3) | JSON},
)
BODY = st.fixed_dictionaries(
    {"model": st.sampled_from(["ok", "nonesuch"]) | JSON},
    optional={
        "max_tokens": st.integers(-1, 9) | JSON,
        "messages": st.lists(TURN, max_size=3) | JSON,
        "system": JSON | st.lists(BLOCK, max_size=2),
        "tools": st.lists(JSON, max_size=2) | JSON,
        "tool_choice": JSON,
        "stop_sequences": JSON,
        "temperature": JSON,
        "metadata": JSON,
        "stream": st.booleans(),
        "thinking": JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, counting=st.booleans())
def test_no_body_gets_a_500_and_every_answer_has_its_shape(
    http: httpx.Client, body: dict[str, Any], counting: bool
) -> None:
    path = "/v1/messages/count_tokens" if counting else "/v1/messages"
    response = http.post(path, json=body)
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        shapes.error(response.json(), response.status_code)
    elif counting:
        shapes.TokenCount.model_validate(response.json())
    elif body.get("stream"):
        for kind, data in sse_events(iter([*response.text.splitlines(), ""])):
            shapes.event(kind, data)
    else:
        shapes.message(response.json())
