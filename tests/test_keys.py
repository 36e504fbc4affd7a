"""`[[keys]]`: allow-lists, RPM and TPM limits, OpenAI's 429 and rate-limit headers.

chatd's own app (`create_app`) on test backends, served by uvicorn in a thread, with the
limits kept in memory and in the test Redis: everything is real but the model, which the
limits do not depend on. tests/test_keys_live.py runs them on `chatd serve` and the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from chatd.backend import Event, Finish, GenerationRequest, ModelInfo, Start, TextDelta, Usage
from chatd.config import Settings
from tests.conftest import free_port
from tests.inproc import EchoBackend, ThreadServer
from tests.redis_support import redis_url
from tests.schema import validate

DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d{1,3})?s|\d+ms)$")
REQUEST_HEADERS = ("limit-requests", "remaining-requests", "reset-requests")
TOKEN_HEADERS = ("limit-tokens", "remaining-tokens", "reset-tokens")


class SlowBackend(EchoBackend):
    """The echo answer, a word every 50 ms; ids that look like a gateway's."""

    def list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo("local/echo", "chatd"),
            ModelInfo("openai/gpt-4o-mini", "openai"),
            ModelInfo("openai/gpt-4o", "openai"),
            ModelInfo("fast", "chatd"),
        ]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        yield Start(request.model, "fp_slow")
        words = str(request.messages[-1]["content"]).split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(0.05)
            yield TextDelta(0, word if i == 0 else " " + word)
        yield Finish(0, "stop")
        yield Usage(prompt_tokens=len(request.messages), completion_tokens=len(words))


def fresh_key() -> str:
    return "sk-test-" + uuid.uuid4().hex


def entry(name: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "key_sha256": hashlib.sha256(key.encode()).hexdigest(), **fields}


@contextlib.contextmanager
def serve(
    data_dir: Path,
    keys: list[dict[str, Any]],
    *,
    redis: str | None = None,
    api_keys: tuple[str, ...] = (),
    backend: type[EchoBackend] = EchoBackend,
) -> Iterator[str]:
    from chatd.api.app import create_app

    settings = Settings(
        config={"keys": keys}, api_keys=list(api_keys), data_dir=data_dir, redis_url=redis
    )
    with ThreadServer(create_app(settings, lambda _: [backend()])) as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str | None:
    """Where the limits live: this process, or the test Redis."""
    return redis_url() if request.param == "redis" else None


def chat(
    http: httpx.Client, key: str, model: str = "echo", text: str = "hi", **body: Any
) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}], **body},
    )


def ratelimit(response: httpx.Response) -> dict[str, str]:
    return {
        name.removeprefix("x-ratelimit-"): value
        for name, value in response.headers.items()
        if name.startswith("x-ratelimit-")
    }


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    return body["error"]


def test_rpm_counts_down_then_429_with_retry_after(tmp_path: Path, store: str | None) -> None:
    key = fresh_key()
    with (
        serve(tmp_path, [entry("alice", key, rpm=3)], redis=store) as url,
        httpx.Client(base_url=url) as http,
    ):
        remaining = []
        for _ in range(3):
            response = chat(http, key)
            assert response.status_code == 200
            validate("CreateChatCompletionResponse", response.json())
            headers = ratelimit(response)
            assert set(headers) == set(REQUEST_HEADERS)  # no tpm: no token headers
            assert headers["limit-requests"] == "3"
            assert DURATION.match(headers["reset-requests"]), headers
            remaining.append(int(headers["remaining-requests"]))
        assert remaining == [2, 1, 0]

        refused = chat(http, key)
        error = error_of(refused, 429)
        assert error["type"] == "requests"
        assert error["code"] == "rate_limit_exceeded"
        assert error["param"] is None
        assert "alice" in error["message"] and "(RPM): Limit 3, Used 3" in error["message"]
        assert key not in refused.text
        # a request comes back every 20 s, and the three were sent just now
        assert 18 <= int(refused.headers["retry-after"]) <= 20
        assert 17_000 < int(refused.headers["retry-after-ms"]) <= 20_000
        assert ratelimit(refused)["remaining-requests"] == "0"
        assert DURATION.match(ratelimit(refused)["reset-requests"])

        # a refused request is not counted, and streams carry the headers too
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as stream:
            assert stream.status_code == 429
            assert stream.headers["x-ratelimit-remaining-requests"] == "0"

        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "x"}]
            )
        assert raised.value.code == "rate_limit_exceeded"


def test_a_key_waits_exactly_its_retry_after(tmp_path: Path, store: str | None) -> None:
    key = fresh_key()
    with (
        serve(tmp_path, [entry("bursty", key, rpm=120)], redis=store) as url,
        httpx.Client(base_url=url) as http,
    ):
        started = time.monotonic()
        admitted = 0
        while (response := chat(http, key)).status_code == 200:
            admitted += 1
        elapsed = time.monotonic() - started
        error_of(response, 429)
        # a burst of the whole limit, plus what came back meanwhile (2 a second)
        assert 120 <= admitted <= 120 + 2 * elapsed + 1
        wait_ms = int(response.headers["retry-after-ms"])
        assert 0 < wait_ms <= 500
        assert chat(http, key).status_code == 429
        time.sleep(wait_ms / 1000 + 0.05)
        assert chat(http, key).status_code == 200


def test_tpm_counts_usage_then_429_tokens(tmp_path: Path, store: str | None) -> None:
    key = fresh_key()
    with (
        serve(tmp_path, [entry("bob", key, tpm=10)], redis=store) as url,
        httpx.Client(base_url=url) as http,
    ):
        first = chat(http, key, text="a b c d e f")
        assert first.status_code == 200
        assert first.json()["usage"]["total_tokens"] == 7  # EchoBackend: 1 message + 6 words
        assert ratelimit(first)["remaining-tokens"] == "10"  # admission counts no tokens
        assert set(ratelimit(first)) == set(TOKEN_HEADERS)

        second = chat(http, key, text="a b c d e f")
        assert second.status_code == 200
        assert ratelimit(second)["remaining-tokens"] == "3"
        assert DURATION.match(ratelimit(second)["reset-tokens"])

        refused = chat(http, key)  # 14 tokens used of 10
        error = error_of(refused, 429)
        assert error["type"] == "tokens"
        assert error["code"] == "rate_limit_exceeded"
        assert "(TPM): Limit 10, Used 14" in error["message"]
        assert ratelimit(refused)["remaining-tokens"] == "0"
        # under the limit again once 5 tokens came back: 6 s each
        assert 28 <= int(refused.headers["retry-after"]) <= 30


def test_streamed_and_abandoned_answers_are_counted(tmp_path: Path, store: str | None) -> None:
    key = fresh_key()
    keys = [entry("carol", key, tpm=120)]  # 2 tokens come back a second
    with (
        serve(tmp_path, keys, redis=store, backend=SlowBackend) as url,
        httpx.Client(base_url=url) as http,
    ):
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="local/echo",
                messages=[{"role": "user", "content": "one two three"}],
                stream=True,
            )
        )
        assert chunks[-1].choices[0].finish_reason == "stop"
        used = 120 - remaining_tokens(http, key)
        assert used in (3, 4)  # 1 + 3, less what came back meanwhile

        messages = [{"role": "user", "content": " ".join(["word"] * 40)}]  # 2 s of answer
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "local/echo", "messages": messages, "stream": True},
        ) as stream:
            for line in stream.iter_lines():
                if '"content":"word"' in line:
                    break  # the client leaves after the first word
        # the backend never reported usage: one token a delta, the prompt guessed from
        # its size (4 bytes a token); counted once the server has seen the client leave
        guess = len(orjson.dumps(messages)) // 4 + 1
        probes, deadline = 1, time.monotonic() + 5
        while (more := 120 - remaining_tokens(http, key) - used) < guess - 2:
            assert time.monotonic() < deadline, more
            probes += 1
            time.sleep(0.1)
        assert more <= guess + 2 * probes + 5  # a few deltas, never the whole answer (40)


def remaining_tokens(http: httpx.Client, key: str) -> int:
    """What the headers say before this request (which uses 2 tokens once it ends)."""
    response = chat(http, key, model="fast", text="x")
    assert response.status_code == 200, response.text
    return int(response.headers["x-ratelimit-remaining-tokens"])


def test_allow_list_looks_like_an_unknown_model(tmp_path: Path) -> None:
    key, other = fresh_key(), fresh_key()
    keys = [
        entry("dave", key, models=["local/*", "openai/gpt-4o-mini", "fast"]),
        entry("erin", other),
    ]
    with serve(tmp_path, keys, backend=SlowBackend) as url, httpx.Client(base_url=url) as http:
        for model in ("local/echo", "openai/gpt-4o-mini", "fast"):
            assert chat(http, key, model=model, text="ok").status_code == 200

        denied = chat(http, key, model="openai/gpt-4o")
        unknown = chat(http, key, model="openai/gpt-5-nope")
        assert error_of(denied, 404) == {
            **error_of(unknown, 404),
            "message": error_of(unknown, 404)["message"].replace("gpt-5-nope", "gpt-4o"),
        }
        assert error_of(denied, 404)["code"] == "model_not_found"
        assert "ratelimit" not in str(denied.headers)  # an unlimited key gets no such headers
        # the model exists: a key without an allow-list uses it
        assert chat(http, other, model="openai/gpt-4o").status_code == 200

        auth = {"authorization": f"Bearer {key}"}
        listed = http.get("/v1/models", headers=auth).json()
        validate("ListModelsResponse", listed)
        assert [m["id"] for m in listed["data"]] == ["local/echo", "openai/gpt-4o-mini", "fast"]
        by_header = http.get("/v1/models", headers={"x-api-key": key}).json()
        assert by_header == listed  # the gateway's header: the same key, the same list
        everything = http.get("/v1/models", headers={"authorization": f"Bearer {other}"}).json()
        assert len(everything["data"]) == 4

        assert http.get("/v1/models/openai/gpt-4o-mini", headers=auth).status_code == 200
        hidden = http.get("/v1/models/openai/gpt-4o", headers=auth)
        missing = http.get("/v1/models/openai/gpt-5-nope", headers=auth)
        assert error_of(hidden, 404) == {
            **error_of(missing, 404),
            "message": error_of(missing, 404)["message"].replace("gpt-5-nope", "gpt-4o"),
        }

        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )


def test_api_key_beside_keys_owner_isolation_and_stable_owner(tmp_path: Path) -> None:
    plain, named, other = fresh_key(), fresh_key(), fresh_key()
    keys = [entry("frank", named, models=["echo"], rpm=1000), entry("gina", other)]

    def store_one(http: httpx.Client, key: str) -> str:
        response = chat(http, key, model="echo-alias", store=True, metadata={"t": "own"})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def stored_ids(http: httpx.Client, key: str) -> set[str]:
        listed = http.get("/v1/chat/completions", headers={"authorization": f"Bearer {key}"})
        assert listed.status_code == 200, listed.text
        return {c["id"] for c in listed.json()["data"]}

    with serve(tmp_path, keys, api_keys=(plain,)) as url, httpx.Client(base_url=url) as http:
        # --api-key: every model, no limit
        response = chat(http, plain, model="echo-alias")
        assert response.status_code == 200
        assert not ratelimit(response)
        first = store_one(http, plain)
        assert first in stored_ids(http, plain)
        assert first not in stored_ids(http, other)
        assert chat(http, "sk-wrong").status_code == 401

    # the same key moved into [[keys]]: the same owner, so its completions stay its own
    keys.append(entry("plain", plain, rpm=100))
    with serve(tmp_path, keys) as url, httpx.Client(base_url=url) as http:
        assert first in stored_ids(http, plain)
        assert first not in stored_ids(http, other)
        assert chat(http, plain, model="echo").headers["x-ratelimit-limit-requests"] == "100"


def test_tokens_by_key_on_metrics_never_the_key(tmp_path: Path) -> None:
    key = fresh_key()
    name = "metered-" + uuid.uuid4().hex[:8]
    with serve(tmp_path, [entry(name, key)]) as url, httpx.Client(base_url=url) as http:
        for _ in range(2):
            assert chat(http, key, text="a b c").status_code == 200
        metrics = http.get("/metrics").text
    assert f'chatd_key_tokens_total{{key="{name}",type="prompt"}} 2.0' in metrics
    assert f'chatd_key_tokens_total{{key="{name}",type="completion"}} 6.0' in metrics
    assert key not in metrics
    assert hashlib.sha256(key.encode()).hexdigest() not in metrics


def test_redis_gone_while_serving_serves_unchecked(tmp_path: Path) -> None:
    script = str(Path(__file__).resolve().parent.parent / "scripts" / "redis.sh")
    env = {
        **os.environ,
        "CHATD_REDIS_DIR": str(tmp_path / "redis"),
        "CHATD_REDIS_PORT": str(free_port()),
    }
    url = subprocess.run(
        ["bash", script, "start"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    key = fresh_key()
    try:
        with (
            serve(tmp_path, [entry("hank", key, rpm=100)], redis=url) as base,
            httpx.Client(base_url=base) as http,
        ):
            assert chat(http, key).headers["x-ratelimit-remaining-requests"] == "99"
            subprocess.run(["bash", script, "stop"], env=env, check=True)
            # limits must not turn a Redis outage into a chatd outage
            response = chat(http, key)
            assert response.status_code == 200
            validate("CreateChatCompletionResponse", response.json())
            assert not ratelimit(response)
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=True)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (20, "20ms"), (1000, "1s"), (1500, "1.5s"), (360_000, "6m0s"),
     (61_250, "1m1.25s"), (3_600_000, "1h0m0s")],
)  # fmt: skip
def test_reset_durations_are_written_as_openai_does(ms: int, text: str) -> None:
    from chatd.api.ratelimit import duration

    assert duration(ms) == text
