"""Engine options of `chatd serve`: flash attention and the KV cache type."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from chatd.cli import build_parser, settings_from_args
from tests.conftest import MODEL, Server
from tests.schema import validate


def settings(*argv: str) -> object:
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


def test_defaults_are_flash_attention_and_f16_kv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATD_FLASH_ATTN", raising=False)
    monkeypatch.delenv("CHATD_KV_TYPE", raising=False)
    s = settings()
    assert s.flash_attn is True  # type: ignore[attr-defined]
    assert s.kv_type == "f16"  # type: ignore[attr-defined]
    assert settings("--no-flash-attn").flash_attn is False  # type: ignore[attr-defined]


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATD_FLASH_ATTN", "0")
    monkeypatch.setenv("CHATD_KV_TYPE", "q8_0")
    with pytest.raises(SystemExit, match="needs flash attention"):
        settings()
    s = settings("--flash-attn")
    assert (s.flash_attn, s.kv_type) == (True, "q8_0")  # type: ignore[attr-defined]


def test_unknown_kv_type_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chatd.cli", "serve", "--kv-type", "q4_0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'q4_0'" in proc.stderr


@pytest.mark.parametrize("args", [("--kv-type", "q8_0"), ("--no-flash-attn",)])
def test_server_answers_with_other_engine_options(tmp_path: Path, args: tuple[str, ...]) -> None:
    server = Server(tmp_path, "--model-name", MODEL, "--parallel", "2", *args).start()
    try:
        client = server.client()
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            temperature=0,
        )
        body = raw.http_response.json()
        validate("CreateChatCompletionResponse", body)
        assert body["usage"]["completion_tokens"] > 0
        assert body["choices"][0]["message"]["content"]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def repeatable(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """bf16 KV: flash attention always takes its order-keeping kernel."""
    server = Server(
        Path(tmp_path_factory.mktemp("bf16")), "--model-name", MODEL, "--kv-type", "bf16"
    ).start()
    yield server
    server.stop()


def logprobs_of(completion: Any) -> list[tuple[str, float]]:
    return [(e.token, e.logprob) for e in completion.choices[0].logprobs.content]


def test_bf16_kv_repeats_across_the_prefix_cache_and_predictions(repeatable: Server) -> None:
    client = repeatable.client()
    messages = [
        {"role": "system", "content": f"Session {uuid.uuid4()}. You write tidy Python."},
        {"role": "user", "content": "Write a function that returns the squares of 1 to 10."},
    ]
    kwargs: dict[str, Any] = {"model": MODEL, "messages": messages, "temperature": 0}
    cold = client.chat.completions.create(max_tokens=80, logprobs=True, **kwargs)
    warm = client.chat.completions.create(max_tokens=80, logprobs=True, **kwargs)
    assert cold.usage.prompt_tokens_details.cached_tokens < 5
    assert warm.usage.prompt_tokens_details.cached_tokens == warm.usage.prompt_tokens - 1
    assert logprobs_of(warm) == logprobs_of(cold)  # bit for bit, not just the text

    text = cold.choices[0].message.content
    edited = text[: len(text) // 2] + "# a wrong line\n" + text[len(text) // 2 + 10 :]
    raw = client.chat.completions.with_raw_response.create(
        max_tokens=80,
        logprobs=True,
        prediction={"type": "content", "content": edited},
        **kwargs,
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    predicted = raw.parse()
    assert logprobs_of(predicted) == logprobs_of(cold)
    details = predicted.usage.completion_tokens_details
    assert details.accepted_prediction_tokens > 0
    assert details.rejected_prediction_tokens > 0
