"""The `chatd chat` loop: read a line (prompt_toolkit), run a command or stream an answer."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import openai
import platformdirs
from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console
from rich.text import Text

from chatd.client.commands import Quit, UsageError, run_command
from chatd.client.conversation import Conversation
from chatd.client.render import Answer, stream_answer, summary


def describe_error(exc: Exception, base_url: str) -> str:
    """One line for a failed request: status, code and the server's message."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.response.text or exc.message
        code = exc.code or body.get("type")
        text = f"{exc.status_code} {code}: {message}" if code else f"{exc.status_code}: {message}"
    elif isinstance(exc, openai.APITimeoutError):
        text = f"{base_url} did not answer in time"
    elif isinstance(exc, openai.APIConnectionError):
        text = f"cannot reach {base_url}: {exc.__cause__ or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def key_bindings() -> KeyBindings:
    """Enter sends; Alt-Enter (Esc Enter) inserts a newline."""
    bindings = KeyBindings()

    # Ctrl-J sends too: an Enter typed ahead, while the terminal was not in raw mode (an
    # answer streaming), reaches the prompt as "\n", which is Ctrl-J
    @bindings.add("enter")
    @bindings.add("c-j")
    def _send(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


def history(path: str | None) -> History:
    file = Path(path) if path else platformdirs.user_state_path("chatd") / "chat_history"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch()
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(file))


class Chat:
    """One terminal session against one server."""

    def __init__(
        self, console: Console, client: openai.OpenAI, conversation: Conversation, base_url: str
    ) -> None:
        self.console = console
        self.client = client
        self.conversation = conversation
        self.base_url = base_url

    def info(self, message: str) -> None:
        self.console.print(Text(message, style="cyan"))

    def error(self, message: str) -> None:
        self.console.print(Text(f"error: {message}", style="bold red"))

    def loop(self, session: PromptSession[str]) -> int:
        self.info(
            f"chatd chat · {self.conversation.model} at {self.base_url} · Enter sends, "
            "Alt-Enter new line, Ctrl-C stops, Ctrl-D leaves, /help"
        )
        while True:
            try:
                line = session.prompt("> ").strip()
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if line.startswith("//"):
                self.send(line[1:])
            elif line.startswith("/"):
                try:
                    run_command(self, line)
                except Quit:
                    return 0
                except UsageError as exc:
                    self.error(str(exc))
                except openai.OpenAIError as exc:
                    self.error(describe_error(exc, self.base_url))
            elif line:
                self.send(line)

    def send(self, text: str) -> None:
        """Stream the answer to `text`; keep the exchange unless it was stopped before any text."""
        start = time.monotonic()
        try:
            stream = self.client.chat.completions.create(
                **self.conversation.request(text),
                stream=True,
                stream_options={"include_usage": True},
            )
        except KeyboardInterrupt:  # before the first token; the SDK closed the connection
            answer = Answer(stopped=True, elapsed_s=time.monotonic() - start)
        except openai.OpenAIError as exc:
            self.error(describe_error(exc, self.base_url))
            return
        else:
            # leaving `with` closes the response: a stopped answer's connection ends and
            # the server cancels the generation
            with stream:
                try:
                    answer = stream_answer(self.console, stream, start)
                except openai.OpenAIError as exc:
                    self.error(describe_error(exc, self.base_url))
                    return
        if answer.text or not answer.stopped:
            self.conversation.add_exchange(text, answer.text)
        self.console.print(summary(answer))


def first_model(client: openai.OpenAI) -> str:
    models = client.models.list().data
    if not models:
        raise ValueError("the server lists no models; name one with --model")
    return models[0].id


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    # without a key the SDK refuses to start; servers that need none ignore it
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key or "none", max_retries=0)
    try:
        model = args.model or first_model(client)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bad URL or key, or not an OpenAI-compatible server
        console.print(Text(f"error: {describe_error(exc, args.base_url)}", style="bold red"))
        return 1
    conversation = Conversation(
        model=model, system=args.system, temperature=args.temperature, max_tokens=args.max_tokens
    )
    session: PromptSession[str] = PromptSession(
        history=history(args.history),
        key_bindings=key_bindings(),
        multiline=True,
        prompt_continuation=". ",
    )
    return Chat(console, client, conversation, args.base_url).loop(session)
