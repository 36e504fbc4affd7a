"""Anthropic Messages API stream -> chatd events, as pure functions.

`SSEDecoder` splits the body into (event, data); `StreamTranslator` turns each event into
Start, TextDelta, ToolCallDelta and Finish, and counts usage. Tests feed it recorded streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatd.backend import Event, Finish, FinishReason, Start, TextDelta, ToolCallDelta, Usage
from chatd.upstream.anthropic_errors import error_from_event

SERVED_TIERS = {"standard": "default", "priority": "priority", "batch": "flex"}
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class SSEDecoder:
    """Incremental `sse_events`: feed lines as they arrive, get complete events back."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line:
            if line.startswith("data:"):
                self.data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                self.event = line[6:].strip()
            return None
        if not self.data:
            self.event = ""
            return None
        done = (self.event or "message", "\n".join(self.data))
        self.event, self.data = "", []
        return done


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of each complete server-sent event in `lines`."""
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


@dataclass(slots=True)
class _Block:
    call_index: int | None  # None: a text block (or one chatd does not relay)
    relay: bool = True
    had_arguments: bool = False


@dataclass
class StreamTranslator:
    """One Messages API stream -> chatd events for choice `index`.

    `feed(type, data)` returns the events for one stream event; `Start` comes from
    `message_start`, `Finish` from `message_delta`'s stop_reason; `usage()` is the final
    count. A stream `error` event raises UpstreamError naming `upstream`.
    """

    upstream: str
    index: int = 0
    model: str = ""  # the model asked for: Start's, if the stream names none first
    started: bool = False
    stopped: bool = False
    finish: FinishReason | None = None
    input_tokens: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    output_tokens: int = 0
    calls: int = 0
    blocks: dict[int, _Block] = field(default_factory=dict)

    def feed(self, kind: str, data: dict[str, Any]) -> list[Event]:
        if self.stopped:
            # llama-server can send a short answer's message_start even after its
            # message_stop: its usage still counts, nothing else does
            if kind == "message_start":
                self._count((data.get("message") or {}).get("usage"))
            return []
        handler = getattr(self, "_on_" + kind, None)
        events = [] if handler is None else handler(data)
        if events and not self.started:
            # llama-server can send a short answer's blocks before its message_start: the
            # contract opens with Start all the same
            self.started = True
            events.insert(0, Start(self.model, None))
        return events

    def feed_raw(self, kind: str, data: str) -> list[Event]:
        if kind == "ping":
            return []
        return self.feed(kind, orjson.loads(data))

    def usage(self) -> Usage:
        # input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes both
        return Usage(
            prompt_tokens=self.input_tokens + self.cache_creation + self.cache_read,
            completion_tokens=self.output_tokens,
            cached_tokens=self.cache_read,
        )

    def _count(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        # message_delta's counts are cumulative: each present one replaces the last
        self.input_tokens = usage.get("input_tokens") or self.input_tokens
        self.cache_creation = usage.get("cache_creation_input_tokens") or self.cache_creation
        self.cache_read = usage.get("cache_read_input_tokens") or self.cache_read
        self.output_tokens = usage.get("output_tokens") or self.output_tokens

    def _on_message_start(self, data: dict[str, Any]) -> list[Event]:
        message = data.get("message") or {}
        usage = message.get("usage") or {}
        self._count(usage)
        if self.started:
            return []
        self.started = True
        tier = SERVED_TIERS.get(str(usage.get("service_tier")), "default")
        model = message.get("model") or self.model
        prompt = self.input_tokens + self.cache_creation + self.cache_read
        return [Start(model, None, service_tier=tier, prompt_tokens=prompt or None)]

    def _on_content_block_start(self, data: dict[str, Any]) -> list[Event]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        position = data["index"]
        if kind == "text":
            self.blocks[position] = _Block(None)
            text = block.get("text")
            return [TextDelta(self.index, text)] if text else []
        if kind != "tool_use":  # thinking, server tools: not part of a chat completion
            self.blocks[position] = _Block(None, relay=False)
            return []
        call = self.calls
        self.calls += 1
        entry = _Block(call)
        self.blocks[position] = entry
        given = block.get("input")
        arguments = orjson.dumps(given).decode() if given else ""
        entry.had_arguments = bool(arguments)
        return [
            ToolCallDelta(
                self.index,
                call,
                arguments=arguments,
                id=block.get("id"),
                kind="function",
                name=block.get("name"),
            )
        ]

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[Event]:
        entry = self.blocks.get(data["index"])
        delta = data.get("delta") or {}
        if entry is None or not entry.relay:
            return []
        kind = delta.get("type")
        if kind == "text_delta" and entry.call_index is None:
            text = delta.get("text") or ""
            return [TextDelta(self.index, text)] if text else []
        if kind == "input_json_delta" and entry.call_index is not None:
            fragment = delta.get("partial_json") or ""
            if not fragment:
                return []
            entry.had_arguments = True
            return [ToolCallDelta(self.index, entry.call_index, arguments=fragment)]
        return []  # citations_delta, thinking_delta, signature_delta

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[Event]:
        entry = self.blocks.get(data["index"])
        if entry is None or entry.call_index is None or entry.had_arguments:
            return []
        # a call without arguments: OpenAI's clients expect a JSON object, never ""
        entry.had_arguments = True
        return [ToolCallDelta(self.index, entry.call_index, arguments="{}")]

    def _on_message_delta(self, data: dict[str, Any]) -> list[Event]:
        self._count(data.get("usage"))
        delta = data.get("delta") or {}
        reason = delta.get("stop_reason")
        if reason is None or self.finish is not None:
            return []
        self.finish = STOP_REASONS.get(reason, "stop")
        matched = delta.get("stop_sequence") if reason == "stop_sequence" else None
        return [Finish(self.index, self.finish, matched if isinstance(matched, str) else None)]

    def _on_message_stop(self, data: dict[str, Any]) -> list[Event]:
        self.stopped = True
        if self.finish is None:  # a stream with no stop_reason: it ended on its own
            self.finish = "stop"
            return [Finish(self.index, "stop")]
        return []

    def _on_error(self, data: dict[str, Any]) -> list[Event]:
        raise error_from_event(self.upstream, data)
