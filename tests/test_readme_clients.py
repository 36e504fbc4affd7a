"""The README's "Clients" section: every snippet runs against a live `chatd serve`."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT, Server
from tests.schema import validate

README_URL = "http://127.0.0.1:8000"
DEFAULT_MODEL = "smollm2-135m-instruct-q4_1"  # the id `chatd serve` gives the default model
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARKED = re.compile(r"^<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    name: str
    language: str
    code: str


def clients_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Clients\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else len(readme)]


def snippets() -> dict[str, Snippet]:
    return {
        name: Snippet(name, language, code)
        for name, language, code in MARKED.findall(clients_section())
    }


CHECKS: dict[str, Callable[[str], None]] = {}


def check(name: str) -> Callable[[Callable[[str], None]], Callable[[str], None]]:
    def register(function: Callable[[str], None]) -> Callable[[str], None]:
        CHECKS[name] = function
        return function

    return register


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`chatd serve` with its defaults, as the README's reader starts it (another port).

    One llama.cpp thread: the snippets are short, and on a busy machine two threads spend
    their time waiting for each other.
    """
    srv = Server(tmp_path_factory.mktemp("readme"), "--threads", "1").start()
    yield srv
    srv.stop()


def run(snippet: Snippet, server: Server) -> str:
    code = snippet.code.replace(README_URL, server.url)
    if snippet.language == "python":
        command = [sys.executable, "-c", code]
    elif snippet.language == "sh":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        raise AssertionError(f"{snippet.name}: no way to run {snippet.language!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, f"{snippet.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_snippet_in_the_section_is_run() -> None:
    section = clients_section()
    assert len(FENCE.findall(section)) == len(MARKED.findall(section)), "an unmarked snippet"
    assert set(snippets()) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(snippets()))
def test_snippet(name: str, default_server: Server) -> None:
    CHECKS[name](run(snippets()[name], default_server))


@check("openai-sync")
def _sync(out: str) -> None:
    *text, last = out.rstrip("\n").split("\n")
    assert "".join(text).strip(), out
    assert re.fullmatch(r"(stop|length) [1-9]\d*", last), out


@check("openai-stream")
def _stream(out: str) -> None:
    text, _, last = out.rstrip("\n").rpartition("\n")
    assert text.strip(), out
    assert re.fullmatch(r"\[[1-9]\d* tokens\]", last), out


@check("openai-async")
def _async(out: str) -> None:
    lines = out.rstrip("\n").split("\n")
    questions = ["What is the capital of France?", "Name a color.", "What is 2 + 2?"]
    assert len(lines) == 3, out
    for question, line in zip(questions, lines, strict=True):
        assert line.startswith(f"{question} -> "), out
        answer = ast.literal_eval(line.removeprefix(f"{question} -> "))
        assert isinstance(answer, str) and answer.strip(), out


@check("openai-parse")
def _parse(out: str) -> None:
    assert re.fullmatch(r"City\(name=(['\"]).+\1, country=(['\"]).*\2, population=-?\d+\)\n", out)


@check("langchain-chat")
def _langchain_chat(out: str) -> None:
    assert len([line for line in out.split("\n") if line.strip()]) >= 2, out


@check("langchain-structured")
def _langchain_structured(out: str) -> None:
    assert re.fullmatch(r"Person\(name=(['\"]).+\1, age=-?\d+\)\n", out), out


@check("langchain-tools")
def _langchain_tools(out: str) -> None:
    lines = out.rstrip("\n").split("\n")
    assert lines, out
    for line in lines:
        match = re.fullmatch(r"get_weather (\{'city': .*\}) -> Sunny, 22 C in (.*)", line)
        assert match, out
        assert ast.literal_eval(match.group(1))["city"] == match.group(2)


@check("curl")
def _curl(out: str) -> None:
    body = json.loads(out)
    validate("CreateChatCompletionResponse", body)
    assert body["model"] == DEFAULT_MODEL
    assert body["usage"]["completion_tokens"] > 0


@check("curl-stream")
def _curl_stream(out: str) -> None:
    events = [line.removeprefix("data: ") for line in out.split("\n") if line]
    assert all(line.startswith("data: ") for line in out.split("\n") if line), out
    assert events[-1] == "[DONE]", out
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert {chunk["model"] for chunk in chunks} == {DEFAULT_MODEL}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()
