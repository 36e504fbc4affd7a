"""Streaming an answer onto the terminal as Markdown (rich), and its summary line."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

CODE_THEME = "monokai"
REDRAW_S = 0.1  # redrawing parses the whole answer's Markdown: at most this often


@dataclass
class Answer:
    """What came back for one request."""

    text: str = ""
    model: str | None = None
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    chunks: int = 0  # those with content
    first_token_s: float | None = None
    elapsed_s: float = 0.0
    stopped: bool = False  # Ctrl-C ended it


class Tail:
    """The last lines of a renderable that fit the screen.

    While an answer streams, Live redraws it in place; a region taller than the screen
    cannot be redrawn, so only its end is shown until the whole answer is printed.
    """

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        for line in lines[-max(console.height - 2, 1) :]:
            yield from line
            yield Segment.line()


@contextlib.contextmanager
def no_echo() -> Iterator[None]:
    """Keys typed while an answer streams are not echoed (they wait for the next prompt).

    An echo, the `^C` of Ctrl-C too, would move the cursor under Live's feet, and Live
    would then erase the wrong lines.
    """
    try:
        import termios
    except ImportError:  # not Unix
        yield
        return
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):  # not a terminal
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def stream_answer(console: Console, stream: Iterable[ChatCompletionChunk], start: float) -> Answer:
    """Show the chunks' text as it arrives; Ctrl-C stops it (the caller closes the stream).

    `start` is when the request was sent (`time.monotonic()`).
    """
    answer = Answer()
    drawn = 0.0
    try:
        with no_echo(), Live(console=console, auto_refresh=False, transient=True) as live:
            for chunk in stream:
                answer.model = chunk.model or answer.model
                if chunk.usage is not None:
                    answer.usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    answer.finish_reason = choice.finish_reason
                if choice.delta.content:
                    if answer.first_token_s is None:
                        answer.first_token_s = time.monotonic() - start
                    answer.text += choice.delta.content
                    answer.chunks += 1
                    if time.monotonic() - drawn >= REDRAW_S:
                        live.update(
                            Tail(Markdown(answer.text, code_theme=CODE_THEME)), refresh=True
                        )
                        drawn = time.monotonic()
    except KeyboardInterrupt:
        answer.stopped = True
    finally:
        # a second Ctrl-C must not cut the answer's final print short
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            answer.elapsed_s = time.monotonic() - start
            if answer.text:
                console.print(Markdown(answer.text, code_theme=CODE_THEME))
        finally:
            signal.signal(signal.SIGINT, previous)
    return answer


def summary(answer: Answer) -> Text:
    """One dim line: model, tokens, speed, finish reason (or that Ctrl-C stopped it)."""
    parts = [answer.model or "?"]
    if answer.usage is not None:  # a stopped stream has none: count its chunks
        parts.append(f"{answer.usage.completion_tokens} tokens")
    else:
        parts.append(f"{answer.chunks} chunks")
    if answer.first_token_s is not None:
        parts.append(f"first token {answer.first_token_s:.2f}s")
    parts.append(f"{answer.elapsed_s:.1f}s")
    decode_s = answer.elapsed_s - (answer.first_token_s or 0.0)
    if answer.usage is not None and answer.usage.completion_tokens > 1 and decode_s > 0:
        parts.append(f"{(answer.usage.completion_tokens - 1) / decode_s:.1f} tokens/s")
    parts.append("stopped (Ctrl-C)" if answer.stopped else f"finish {answer.finish_reason}")
    return Text(" · ".join(parts), style="dim")
