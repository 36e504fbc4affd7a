"""The Backend contract seen from the API: routing, capabilities after routing, pass-through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
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
from chatd.router import DuplicateModel, Router
from tests.inproc import EchoBackend, ThreadServer
from tests.schema import validate

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}


class VisionBackend:
    """A remote-like model that reads images and knows every optional field; it reports
    what it was asked, so a test can see what reached it."""

    def __init__(self) -> None:
        self.seen: list[GenerationRequest] = []

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("vendor/vision", "vendor", created=1700000000)]

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(
            input_modalities=frozenset({"text", "image"}),
            audio_output=True,
            reasoning_efforts=None,
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.seen.append(request)
        yield Start("vision-2025-01-01", None, service_tier="priority")
        yield TextDelta(0, "a cat")
        yield Finish(0, "stop")
        yield Usage(prompt_tokens=5, completion_tokens=2, reasoning_tokens=7)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def vision() -> VisionBackend:
    return VisionBackend()


@pytest.fixture(scope="module")
def http(vision: VisionBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from chatd.api.app import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("contract"))
    app = create_app(settings, lambda _: [EchoBackend(), vision])
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def ask(http: httpx.Client, model: str, **fields: Any) -> httpx.Response:
    content = [{"type": "text", "text": "What is this?"}, IMAGE]
    body = {"model": model, "messages": [{"role": "user", "content": content}], **fields}
    return http.post("/v1/chat/completions", json=body)


def test_capabilities_are_the_chosen_models(http: httpx.Client, vision: VisionBackend) -> None:
    refused = ask(http, "echo")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "messages.[0].content.[1].type"
    beyond_echo = {
        "reasoning_effort": "high",
        "verbosity": "low",
        "audio": {"voice": "alloy", "format": "wav"},
        "modalities": ["text", "audio"],
        "web_search_options": {},
    }
    for key, value in beyond_echo.items():
        only_text = [{"role": "user", "content": "hi"}]
        refused = http.post(
            "/v1/chat/completions", json={"model": "echo", "messages": only_text, key: value}
        )
        assert refused.status_code == 400, key
        assert refused.json()["error"]["param"] == key
        assert "this model (echo)" in refused.json()["error"]["message"]
        assert ask(http, "vendor/vision", **{key: value}).status_code == 200, key
    extras = {**beyond_echo, "user": "u1", "service_tier": "flex"}
    accepted = ask(http, "vendor/vision", **extras)
    assert accepted.status_code == 200, accepted.text
    request = vision.seen[-1]
    assert request.messages[0]["content"][1] == IMAGE
    assert request.passthrough == extras


def test_the_envelope_comes_from_the_backend(http: httpx.Client) -> None:
    body = ask(http, "vendor/vision").json()
    validate("CreateChatCompletionResponse", body)
    assert body["model"] == "vision-2025-01-01"
    assert body["service_tier"] == "priority"
    assert "system_fingerprint" not in body  # a string when present, never null
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 7


def test_models_lists_every_backend(http: httpx.Client) -> None:
    listing = http.get("/v1/models").json()
    validate("ListModelsResponse", listing)
    owners = {m["id"]: m["owned_by"] for m in listing["data"]}
    assert owners == {"echo": "chatd", "echo-alias": "chatd", "vendor/vision": "vendor"}
    model = http.get("/v1/models/vendor/vision").json()
    assert model["created"] == 1700000000
    missing = http.get("/v1/models/vendor/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_unknown_model_is_the_routers_404(http: httpx.Client) -> None:
    response = ask(http, "vendor/nope")
    assert response.status_code == 404
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "model_not_found"


def test_duplicate_model_ids_fail_at_start() -> None:
    with pytest.raises(DuplicateModel, match="echo"):
        Router([EchoBackend(), EchoBackend()])
