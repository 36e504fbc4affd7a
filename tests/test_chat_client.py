"""`chatd chat` in a real terminal (tmux) against a live server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.terminal import Terminal

KEY = "sk-chat-client-test"
PROMPT = r"^> ?$"  # an empty input line: the program waits for the user
SUMMARY = r"^(\S+) · \d+ tokens · .* · finish (stop|length)$"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("chat-client"),
        "--model-name",
        "smollm2",
        "--model-name",
        "gpt-4o-mini",
        "--api-key",
        KEY,
        "--parallel",
        "2",
        "--ctx",
        "4096",
        "--threads",
        "1",  # short answers; on a busy machine two threads mostly wait for each other
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Start `chatd chat ARGS` in tmux; closes every terminal it started."""
    started: list[Terminal] = []

    def start(*args: str, key: str | None = KEY) -> Terminal:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("OPENAI_", "CHATD_", "TMUX"))
        }
        env["XDG_STATE_HOME"] = str(tmp_path / "state")  # the input history
        if key is not None:
            env["CHATD_API_KEY"] = key
        terminal = Terminal([sys.executable, "-m", "chatd.cli", "chat", *args], env=env)
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()


def running_sequences(server: Server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    match = re.search(r'^chatd_running_sequences\{model="smollm2"\} (\S+)$', text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def answer_between(screen: str, question: str) -> str:
    """The text shown after the input line `> question` and before the summary line."""
    start = screen.rindex(f"> {question}\n") + len(question) + 3
    end = re.compile(SUMMARY, re.MULTILINE).search(screen, start)
    return screen[start : end.start() if end else len(screen)].strip()


def test_streams_an_answer_and_applies_commands(
    keyed: Server, chat: Callable[..., Terminal], tmp_path: Path
) -> None:
    term = chat("--base-url", keyed.url + "/v1")
    term.wait_for(r"chatd chat · smollm2 at " + re.escape(keyed.url + "/v1"))  # first of /models
    term.wait_for(PROMPT)
    for command, shown in [
        ("/system You are a helpful assistant who answers briefly.", "system prompt: You are"),
        ("/temperature 0", "temperature: 0.0"),
        ("/max_tokens 80", "max tokens: 80"),
        ('/set metadata {"suite": "chat-client"}', 'metadata: {"suite": "chat-client"}'),
        ("/set store true", "store: true"),
    ]:
        term.type(command)
        term.wait_for("^" + re.escape(shown))

    question = "Write a Markdown list of three fruits."
    term.type(question)
    term.wait_for(re.escape(f"> {question}"))
    partial = ""
    deadline = time.monotonic() + 240
    while not re.search(SUMMARY, screen := term.screen(), re.MULTILINE):
        assert time.monotonic() < deadline, screen
        partial = partial or answer_between(screen, question)
        time.sleep(0.02)
    first = re.search(SUMMARY, screen, re.MULTILINE)
    assert first and first.group(1) == "smollm2"
    shown_answer = answer_between(screen, question)
    assert partial and partial != shown_answer, "the answer was not streamed"

    term.type("/model gpt-4o-mini")
    term.wait_for("^model: gpt-4o-mini")
    # Alt-Enter starts a second line of the same message
    term.type("Name one more fruit.", enter=False)
    term.keys("M-Enter")
    term.type("Just its name.")
    term.wait_for(r"^gpt-4o-mini · \d+ tokens")

    saved = tmp_path / "conversation.json"
    term.type(f"/save {saved}")
    term.wait_for(f"^saved 5 messages to {re.escape(str(saved))}")
    messages = json.loads(saved.read_text())
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "You are a helpful assistant who answers briefly."
    assert messages[1]["content"] == question
    assert messages[3]["content"] == "Name one more fruit.\nJust its name."
    # rich renders the Markdown: list markers become bullets, emphasis loses its stars
    raw = messages[2]["content"]
    assert re.search(r"^\s*([-*]|\d+\.) ", raw, re.MULTILINE), raw
    assert "•" in shown_answer or re.search(r"^\s*\d+ ", shown_answer, re.MULTILINE)
    assert "**" not in shown_answer

    # the server got what the screen claims: the system prompt, both models, the settings
    client = keyed.client(KEY)
    stored = list(client.chat.completions.list(metadata={"suite": "chat-client"}, order="asc"))
    assert [c.model for c in stored] == ["smollm2", "gpt-4o-mini"]
    assert [c.choices[0].message.content for c in stored] == [
        messages[2]["content"],
        messages[4]["content"],
    ]
    sent = [m.content for m in client.chat.completions.messages.list(stored[1].id, order="asc")]
    assert sent == [m["content"] for m in messages[:4]]

    term.type("/clear")
    term.wait_for("^conversation cleared")
    term.type(f"/save {saved}")
    term.wait_for("^saved 1 messages")
    assert json.loads(saved.read_text()) == messages[:1]

    # history: Up recalls the last input
    term.keys("Up")
    term.wait_for(f"^> /save {re.escape(str(saved))}$", after=term.screen().rindex("saved 1"))
    term.keys("C-u")
    term.type("/quit")
    assert term.exit_status() == 0


def test_ctrl_c_stops_the_generation_and_keeps_the_program(
    keyed: Server, chat: Callable[..., Terminal]
) -> None:
    term = chat("--base-url", keyed.url + "/v1", "--model", "smollm2", "--max-tokens", "4000")
    term.wait_for(PROMPT)
    term.type("/set ignore_eos true")
    term.wait_for("^ignore_eos: true")
    term.type("Tell me a long story.")
    mark = term.wait_for(re.escape("> Tell me a long story.")).end()
    term.wait_for(r"\S", after=mark + 1)  # the answer streams
    assert running_sequences(keyed) == 1

    term.keys("C-c")
    stopped = term.wait_for(r"^smollm2 · \d+ chunks · .* · stopped \(Ctrl-C\)$", timeout=30)
    term.wait_for(PROMPT, after=stopped.end())
    deadline = time.monotonic() + 15
    while running_sequences(keyed) != 0:
        assert time.monotonic() < deadline, "the server still generates the stopped answer"
        time.sleep(0.1)

    term.type("/help")
    term.wait_for(r"^/save FILE\s+write the conversation")
    term.keys("C-d")
    assert term.exit_status() == 0
    assert "Traceback" not in term.screen()


def test_a_wrong_key_is_one_readable_line(keyed: Server, chat: Callable[..., Terminal]) -> None:
    term = chat("--base-url", keyed.url + "/v1", "--model", "smollm2", key="sk-wrong")
    term.wait_for(PROMPT)
    term.type("Hello")
    term.wait_for(r"^error: 401 invalid_api_key: Incorrect API key provided")
    term.wait_for(PROMPT, after=term.screen().rindex("error: 401"))
    term.type("/quit")
    assert term.exit_status() == 0

    # without --model the client asks GET /models first, and cannot start
    term = chat("--base-url", keyed.url + "/v1", key="sk-wrong")
    term.wait_for(r"^error: 401 invalid_api_key: Incorrect API key provided")
    assert term.exit_status() == 1
    assert "Traceback" not in term.screen()


def test_an_unreachable_server_is_one_readable_line(chat: Callable[..., Terminal]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    term = chat("--base-url", url, key=None)
    term.wait_for(f"^error: cannot reach {re.escape(url)}: .*Connection refused")
    assert term.exit_status() == 1
    assert "Traceback" not in term.screen()


def test_the_server_does_not_load_the_client_libraries() -> None:
    code = (
        "import sys; from chatd import cli; from chatd.api.app import create_app; "
        "cli.build_parser().parse_args(['serve']); "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(loaded & {'openai', 'rich', 'prompt_toolkit'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
