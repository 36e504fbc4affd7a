"""Events -> the Messages API's objects: the Message, and the events of its stream.

One answer is a list of content blocks: the text first (if any), then one `tool_use` block
per call. Usage is Anthropic's: `input_tokens` excludes what the prefix cache supplied
(`cache_read_input_tokens`), as the Messages API counts cache reads apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from chatd.api.messages_errors import MessagesError
from chatd.backend import (
    Event,
    Finish,
    RefusalDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from chatd.ids import base62

STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    return "msg_" + base62(24)


def tool_use_id(call_id: str | None) -> str:
    """A call's id as the Messages API writes them: `toolu_...` (the same id each time)."""
    if call_id is None:
        return "toolu_" + base62(24)
    return "toolu_" + call_id.removeprefix("call_")


def stop_reason(finish: Finish) -> str:
    if finish.reason == "stop":
        return "stop_sequence" if finish.stop_sequence is not None else "end_turn"
    return STOP_REASONS[finish.reason]


def usage_dict(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "service_tier": "standard",
    }


def sse(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event as the Messages API frames them: named, its type in the data."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def sse_error(error: MessagesError) -> bytes:
    return sse("error", error.body())


@dataclass(slots=True)
class _Block:
    kind: str  # "text" or "tool_use"
    text: list[str] = field(default_factory=list)  # text, or the input's JSON
    id: str | None = None
    name: str | None = None
    closed: bool = False  # its content_block_stop was sent

    def result(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": "".join(self.text)}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": _input(self.text)}


def _input(parts: list[str]) -> Any:
    """A call's input; {} when it was cut short (max_tokens) before its JSON was whole."""
    try:
        value = orjson.loads("".join(parts) or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessageEncoder:
    """Events of one answer -> the Message (`result`) or its stream's events (`encode`)."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self.id = message_id()
        self.blocks: list[_Block] = []
        self.calls: dict[int, int] = {}  # call index -> block index
        self.finish: Finish | None = None
        self.usage: Usage | None = None
        self.complete = False  # Finish and Usage came: message_delta and message_stop are due

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.start.model,
        }

    def opening(self) -> bytes:
        """message_start (the usage known so far) and a ping."""
        prompt = self.start.prompt_tokens or 0
        message = {
            **self._envelope(),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_dict(prompt, 0),
        }
        return sse("message_start", {"type": "message_start", "message": message}) + sse(
            "ping", {"type": "ping"}
        )

    def encode(self, event: Event) -> bytes:
        """The stream events one backend event makes (b"" for none)."""
        if isinstance(event, TextDelta | RefusalDelta):
            return self._text(event.text)
        if isinstance(event, ToolCallDelta):
            return self._call(event)
        if isinstance(event, Finish):
            self.finish = event
            return self._close_block() + self._ending()
        if isinstance(event, Usage):
            self.usage = event
            return self._ending()
        return b""

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if not self.blocks or self.blocks[-1].kind != "text":
            out += self._close_block() + self._open(_Block("text"))
        self.blocks[-1].text.append(text)
        delta = {"type": "text_delta", "text": text}
        return out + self._delta(delta)

    def _call(self, event: ToolCallDelta) -> bytes:
        out = b""
        if event.call_index not in self.calls:
            out += self._close_block() + self._open(
                _Block("tool_use", id=tool_use_id(event.id), name=event.name)
            )
            self.calls[event.call_index] = len(self.blocks) - 1
        block = self.blocks[self.calls[event.call_index]]
        if not event.arguments:
            return out
        block.text.append(event.arguments)
        return out + self._delta({"type": "input_json_delta", "partial_json": event.arguments})

    def _open(self, block: _Block) -> bytes:
        self.blocks.append(block)
        opened: dict[str, Any] = {"type": "text", "text": ""}
        if block.kind == "tool_use":
            opened = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        data = {"type": "content_block_start", "index": len(self.blocks) - 1}
        return sse("content_block_start", {**data, "content_block": opened})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}
        return sse("content_block_delta", data)

    def _close_block(self) -> bytes:
        if not self.blocks or self.blocks[-1].closed:
            return b""
        self.blocks[-1].closed = True
        data = {"type": "content_block_stop", "index": len(self.blocks) - 1}
        return sse("content_block_stop", data)

    def _stop(self) -> dict[str, Any]:
        assert self.finish is not None
        return {"stop_reason": stop_reason(self.finish), "stop_sequence": self.finish.stop_sequence}

    def _usage(self) -> dict[str, Any]:
        assert self.usage is not None
        u = self.usage
        return usage_dict(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    def _ending(self) -> bytes:
        """message_delta (stop reason, final usage) and message_stop, once both are known."""
        if self.finish is None or self.usage is None or self.complete:
            return b""
        self.complete = True
        usage = self._usage()
        del usage["service_tier"]  # the message's, not the delta's
        delta = {"type": "message_delta", "delta": self._stop(), "usage": usage}
        return sse("message_delta", delta) + sse("message_stop", {"type": "message_stop"})

    def result(self) -> dict[str, Any]:
        """The whole Message (once `complete`)."""
        return {
            **self._envelope(),
            "content": [block.result() for block in self.blocks],
            **self._stop(),
            "usage": self._usage(),
        }
