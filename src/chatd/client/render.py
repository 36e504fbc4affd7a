"""Streaming an answer onto the terminal as Markdown (rich), and its summary line."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

CODE_THEME = "monokai"


@dataclass
class Answer:
    """What came back for one request."""

    text: str = ""
    model: str | None = None
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    chunks: int = 0
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


def stream_answer(console: Console, stream: Iterable[ChatCompletionChunk]) -> Answer:
    """Show the chunks' text as it arrives; Ctrl-C stops it (the caller closes the stream)."""
    answer = Answer()
    start = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=10, transient=True) as live:
            for chunk in stream:
                answer.chunks += 1
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
                    live.update(Tail(Markdown(answer.text, code_theme=CODE_THEME)))
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
    if answer.usage is not None:
        parts.append(f"{answer.usage.completion_tokens} tokens")
        tokens = answer.usage.completion_tokens
    else:
        tokens = answer.chunks
    if answer.first_token_s is not None:
        parts.append(f"first token {answer.first_token_s:.2f}s")
    parts.append(f"{answer.elapsed_s:.1f}s")
    decode_s = answer.elapsed_s - (answer.first_token_s or 0.0)
    if answer.usage is not None and tokens > 1 and decode_s > 0:
        parts.append(f"{(tokens - 1) / decode_s:.1f} tokens/s")
    parts.append("stopped (Ctrl-C)" if answer.stopped else f"finish {answer.finish_reason}")
    return Text(" · ".join(parts), style="dim")
