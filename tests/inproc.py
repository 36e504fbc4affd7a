"""chatd's own app on test backends, served by uvicorn in a thread: all real but the model."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

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
from tests.conftest import free_port


class EchoBackend:
    """Answers with the last message's text, a word per event."""

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("echo", "chatd"), ModelInfo("echo-alias", "chatd")]

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(unsupported=frozenset({"audio", "web_search_options", "verbosity"}))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        yield Start(request.model, "fp_echo")
        content = request.messages[-1].get("content")
        text = content if isinstance(content, str) else "parts"
        words = text.split(" ")
        for i, word in enumerate(words):
            yield TextDelta(0, word if i == 0 else " " + word)
        yield Finish(0, "stop")
        yield Usage(prompt_tokens=len(request.messages), completion_tokens=len(words))

    async def close(self) -> None:
        pass


class ThreadServer:
    """uvicorn serving an app on a free port from a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def echo_api(database_url: str, data_dir: Path, keys: Sequence[str]) -> Iterator[str]:
    """chatd's app on EchoBackend with `keys` and a store on `database_url`; its URL."""
    from chatd.api.app import create_app

    settings = Settings(
        api_keys=list(keys),
        data_dir=data_dir,
        database_url=None if database_url.startswith("sqlite") else database_url,
    )
    with ThreadServer(create_app(settings, lambda _: [EchoBackend()])) as server:
        yield server.url
