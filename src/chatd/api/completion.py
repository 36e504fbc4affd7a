"""Events -> OpenAI objects: the ChatCompletion, and the chunks of its stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatd.backend import (
    Event,
    Finish,
    GenerationFailed,
    RefusalDelta,
    Start,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from chatd.ids import base62


def completion_id() -> str:
    return "chatcmpl-" + base62(29)


@dataclass(slots=True)
class Envelope:
    """What every object of one completion shares: the backend's `Start`, the request's shape."""

    model: str
    system_fingerprint: str | None
    n: int
    logprobs: bool
    legacy_functions: bool
    service_tier: str | None = "default"
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, start: Start, n: int, logprobs: bool, legacy_functions: bool) -> Envelope:
        return cls(
            model=start.model,
            system_fingerprint=start.system_fingerprint,
            n=n,
            logprobs=logprobs,
            legacy_functions=legacy_functions,
            service_tier=start.service_tier,
        )


def check_event(event: object, n: int) -> None:
    """Raise GenerationFailed for an event no backend should send after `Start`."""
    if isinstance(event, Usage):
        return
    if not isinstance(event, TextDelta | RefusalDelta | ToolCallDelta | Finish):
        raise GenerationFailed(f"The backend sent an unexpected event: {type(event).__name__}.")
    if not (isinstance(event.index, int) and 0 <= event.index < n):
        raise GenerationFailed(f"The backend sent an event for choice {event.index!r} of {n}.")


def logprob_dict(entry: TokenLogprob) -> dict[str, Any]:
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": entry.bytes,
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in entry.top_logprobs
        ],
    }


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": usage.accepted_prediction_tokens,
            "rejected_prediction_tokens": usage.rejected_prediction_tokens,
        },
    }


class _ChoiceState:
    __slots__ = ("calls", "content", "finish_reason", "logprobs", "refusal")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class CompletionBuilder:
    """Collects events into one `chat.completion` object."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.choices = [_ChoiceState() for _ in range(envelope.n)]
        self.usage: Usage | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            state = self.choices[event.index]
            state.content.append(event.text)
            if event.logprobs:
                state.logprobs.extend(logprob_dict(e) for e in event.logprobs)
        elif isinstance(event, RefusalDelta):
            self.choices[event.index].refusal.append(event.text)
        elif isinstance(event, ToolCallDelta):
            state = self.choices[event.index]
            call = state.calls.setdefault(event.call_index, {"arguments": []})
            if event.id is not None:
                call.update(id=event.id, kind=event.kind, name=event.name)
            call["arguments"].append(event.arguments)
            if event.logprobs:
                state.logprobs.extend(logprob_dict(e) for e in event.logprobs)
        elif isinstance(event, Finish):
            self.choices[event.index].finish_reason = event.reason
        elif isinstance(event, Usage):
            self.usage = event

    @property
    def complete(self) -> bool:
        return self.usage is not None and all(c.finish_reason for c in self.choices)

    def _message(self, state: _ChoiceState) -> dict[str, Any]:
        text = "".join(state.content)
        refusal = "".join(state.refusal)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not (state.calls or refusal) else None,
            "refusal": refusal or None,
            "annotations": [],
        }
        calls = [state.calls[k] for k in sorted(state.calls)]
        if calls and self.envelope.legacy_functions:
            call = calls[0]
            message["function_call"] = {
                "name": call["name"],
                "arguments": "".join(call["arguments"]),
            }
        elif calls:
            message["tool_calls"] = [_tool_call(call) for call in calls]
        return message

    def result(self) -> dict[str, Any]:
        env = self.envelope
        choices = [
            {
                "index": i,
                "message": self._message(state),
                "logprobs": {"content": state.logprobs, "refusal": None} if env.logprobs else None,
                "finish_reason": state.finish_reason,
            }
            for i, state in enumerate(self.choices)
        ]
        completion = {
            "id": env.id,
            "object": "chat.completion",
            "created": env.created,
            "model": env.model,
            "choices": choices,
            "usage": usage_dict(self.usage) if self.usage else None,
            "service_tier": env.service_tier,
            "system_fingerprint": env.system_fingerprint,
        }
        if env.system_fingerprint is None:  # a string when present, never null (the spec)
            del completion["system_fingerprint"]
        return completion


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    arguments = "".join(call["arguments"])
    if call.get("kind") == "custom":
        return {
            "id": call["id"],
            "type": "custom",
            "custom": {"name": call["name"], "input": arguments},
        }
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": arguments},
    }


class ChunkEncoder:
    """Turns events into `chat.completion.chunk` objects, as the OpenAI API streams them."""

    def __init__(self, envelope: Envelope, include_usage: bool) -> None:
        self.envelope = envelope
        self.include_usage = include_usage
        self.kinds: dict[tuple[int, int], str] = {}
        self.finished: set[int] = set()
        self.opened: set[int] = set()
        self.usage_seen = False

    @property
    def complete(self) -> bool:
        """Whether every choice finished and usage came: only then may a stream say [DONE]."""
        return self.usage_seen and len(self.finished) == self.envelope.n

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        env = self.envelope
        chunk: dict[str, Any] = {
            "id": env.id,
            "object": "chat.completion.chunk",
            "created": env.created,
            "model": env.model,
            "service_tier": env.service_tier,
            "system_fingerprint": env.system_fingerprint,
            "choices": choices,
        }
        if env.system_fingerprint is None:
            del chunk["system_fingerprint"]
        if self.include_usage:
            chunk["usage"] = usage
        return chunk

    def _choice(
        self,
        index: int,
        delta: dict[str, Any],
        logprobs: list[TokenLogprob] | None = None,
        finish_reason: str | None = None,
    ) -> dict[str, Any]:
        lp = None
        if self.envelope.logprobs and finish_reason is None:
            lp = {"content": [logprob_dict(e) for e in logprobs or []], "refusal": None}
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}

    def encode(self, event: Event) -> list[dict[str, Any]]:
        """The chunks of one event; a choice's first event brings the role, as OpenAI's do.

        A choice that opens with text opens with `content: ""`; one that opens with a call
        carries the role in the call's chunk with `content: null`, so a client sees no
        empty text in an answer that is only calls.
        """
        if isinstance(event, Usage):
            self.usage_seen = True
            return [self._chunk([], usage_dict(event))] if self.include_usage else []
        if not isinstance(event, TextDelta | ToolCallDelta | RefusalDelta | Finish):
            return []
        opening = event.index not in self.opened
        self.opened.add(event.index)
        if isinstance(event, ToolCallDelta):
            delta = self._call_delta(event)
            if opening:
                delta = {"role": "assistant", "content": None, **delta, "refusal": None}
            return [self._chunk([self._choice(event.index, delta, event.logprobs)])]
        chunks = [self._opening(event.index)] if opening else []
        if isinstance(event, TextDelta):
            delta = {"content": event.text}
            chunks.append(self._chunk([self._choice(event.index, delta, event.logprobs)]))
        elif isinstance(event, RefusalDelta):
            chunks.append(self._chunk([self._choice(event.index, {"refusal": event.text})]))
        else:
            self.finished.add(event.index)
            chunks.append(self._chunk([self._choice(event.index, {}, finish_reason=event.reason)]))
        return chunks

    def _opening(self, index: int) -> dict[str, Any]:
        return self._chunk(
            [self._choice(index, {"role": "assistant", "content": "", "refusal": None})]
        )

    def _call_delta(self, event: ToolCallDelta) -> dict[str, Any]:
        if self.envelope.legacy_functions:
            fn: dict[str, Any] = {"arguments": event.arguments}
            if event.name is not None:
                fn = {"name": event.name, "arguments": event.arguments}
            return {"function_call": fn}
        call: dict[str, Any] = {"index": event.call_index}
        key = (event.index, event.call_index)
        if event.id is not None:
            self.kinds[key] = event.kind or "function"
            call["id"] = event.id
            call["type"] = self.kinds[key]
        if self.kinds.get(key) == "custom":
            call["custom"] = {"input": event.arguments}
            if event.name is not None:
                call["custom"]["name"] = event.name
        else:
            call["function"] = {"arguments": event.arguments}
            if event.name is not None:
                call["function"]["name"] = event.name
        return {"tool_calls": [call]}
