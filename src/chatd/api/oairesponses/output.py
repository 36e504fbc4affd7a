"""Events -> the Response object, and the stream events that build it.

One `ResponseWriter` serves both ways of answering: a stream sends the events
`add` returns, a plain request drops them and sends `response` at the end, so
the two cannot drift apart. Sequence numbers count every event of the stream.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from chatd.api.errors import APIError
from chatd.api.oairesponses.items import new_id
from chatd.api.oairesponses.request import ResponsesRequest
from chatd.backend import (
    Event,
    Finish,
    RefusalDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def response_id() -> str:
    return new_id("resp")


def skeleton(req: ResponsesRequest, rid: str, model: str) -> dict[str, Any]:
    """The Response before any output: the request's settings as the API echoes them."""
    raw = req.raw
    text = raw.get("text") or {}
    reasoning = raw.get("reasoning") or {}
    response = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": req.background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": raw.get("max_tool_calls"),
        "model": model,
        "output": [],
        "parallel_tool_calls": raw.get("parallel_tool_calls") is not False,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": raw.get("prompt_cache_key"),
        "prompt_cache_retention": raw.get("prompt_cache_retention"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": None},
        "safety_identifier": raw.get("safety_identifier"),
        "service_tier": raw.get("service_tier") or "auto",
        "store": req.store,
        "temperature": _number(raw.get("temperature"), 1.0),
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },
        "tool_choice": raw.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in raw.get("tools") or []],
        "top_logprobs": raw.get("top_logprobs") or 0,
        "top_p": _number(raw.get("top_p"), 1.0),
        "truncation": req.truncation,
        "metadata": req.metadata,
    }
    if raw.get("user") is not None:  # a string when present, never null (the spec)
        response["user"] = raw["user"]
    return response


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict") is not False,
    }


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _logprob(entry: TokenLogprob) -> dict[str, Any]:
    """A token's logprobs as an output_text part holds them (LogProb)."""
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": entry.bytes or [],
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": t.bytes or []}
            for t in entry.top_logprobs
        ],
    }


def _delta_logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """The same, as a delta event carries it (ResponseLogProb)."""
    top = [{"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]]
    return {"token": entry["token"], "logprob": entry["logprob"], "top_logprobs": top}


class ResponseWriter:
    """Builds `response` from backend events; each step returns the stream events it makes."""

    def __init__(self, response: dict[str, Any], logprobs: bool) -> None:
        self.response = response
        self.logprobs = logprobs
        self.sequence = 0
        self.message: dict[str, Any] | None = None  # the open output message
        self.part: dict[str, Any] | None = None  # its open content part
        self.texts: list[str] = []  # the open part's text so far
        self.calls: dict[int, dict[str, Any]] = {}  # call_index -> open function_call item
        self.arguments: dict[int, list[str]] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None

    @property
    def complete(self) -> bool:
        return self.finish is not None and self.usage is not None

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def _snapshot(self, kind: str) -> dict[str, Any]:
        return self.event(kind, response=copy.deepcopy(self.response))

    def opening(self) -> list[dict[str, Any]]:
        return [self._snapshot("response.created"), self._snapshot("response.in_progress")]

    @property
    def _index(self) -> int:
        return len(self.response["output"]) - 1

    def add(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, TextDelta):
            return self._text(event)
        if isinstance(event, RefusalDelta):
            out = self._open_part("refusal")
            self.texts.append(event.text)
            return [*out, self._delta("response.refusal.delta", event.text)]
        if isinstance(event, ToolCallDelta):
            return self._call(event)
        if isinstance(event, Finish):
            self.finish = event.reason
            return self._close_message() + self._close_calls()
        if isinstance(event, Usage):
            self.usage = event
        return []

    def _text(self, event: TextDelta) -> list[dict[str, Any]]:
        out = self._open_part("output_text")
        self.texts.append(event.text)
        assert self.part is not None
        logprobs = [_logprob(e) for e in event.logprobs or ()] if self.logprobs else []
        self.part["logprobs"].extend(logprobs)
        fields = {"logprobs": [_delta_logprob(e) for e in logprobs]}
        return [*out, self._delta("response.output_text.delta", event.text, **fields)]

    def _delta(self, kind: str, text: str, **fields: Any) -> dict[str, Any]:
        assert self.message is not None
        return self.event(
            kind,
            item_id=self.message["id"],
            output_index=self._index,
            content_index=len(self.message["content"]) - 1,
            delta=text,
            **fields,
        )

    def _open_part(self, kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.message is None:
            out += self._close_calls()
            self.message = {
                "id": new_id("msg"),
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            }
            self.response["output"].append(self.message)
            added = copy.deepcopy(self.message)
            out.append(
                self.event("response.output_item.added", output_index=self._index, item=added)
            )
        if self.part is not None and self.part["type"] == kind:
            return out
        out += self._close_part()
        if kind == "output_text":
            self.part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            self.part = {"type": "refusal", "refusal": ""}
        self.message["content"].append(self.part)
        out.append(
            self.event(
                "response.content_part.added",
                item_id=self.message["id"],
                output_index=self._index,
                content_index=len(self.message["content"]) - 1,
                part=copy.deepcopy(self.part),
            )
        )
        return out

    def _close_part(self) -> list[dict[str, Any]]:
        part, message = self.part, self.message
        if part is None or message is None:
            return []
        self.part = None
        text = "".join(self.texts)
        self.texts = []
        where = {
            "item_id": message["id"],
            "output_index": self.response["output"].index(message),
            "content_index": len(message["content"]) - 1,
        }
        if part["type"] == "output_text":
            part["text"] = text
            done = self.event(
                "response.output_text.done", **where, text=text, logprobs=part["logprobs"]
            )
        else:
            part["refusal"] = text
            done = self.event("response.refusal.done", **where, refusal=text)
        return [done, self.event("response.content_part.done", **where, part=part)]

    def _status(self) -> str:
        return "incomplete" if self.finish in INCOMPLETE_REASONS else "completed"

    def _close_message(self) -> list[dict[str, Any]]:
        message = self.message
        if message is None:
            return []
        out = self._close_part()
        self.message = None
        message["status"] = self._status()
        index = self.response["output"].index(message)
        return [*out, self.event("response.output_item.done", output_index=index, item=message)]

    def _call(self, event: ToolCallDelta) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if event.id is not None:  # a new call: what came before it is done
            out += self._close_message() + self._close_calls()
            new: dict[str, Any] = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": event.id,
                "name": event.name or "",
            }
            self.calls[event.call_index] = new
            self.arguments[event.call_index] = []
            self.response["output"].append(new)
            added = dict(new)
            out.append(
                self.event("response.output_item.added", output_index=self._index, item=added)
            )
        item = self.calls.get(event.call_index)
        if item is None or not event.arguments:
            return out
        self.arguments[event.call_index].append(event.arguments)
        out.append(
            self.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.response["output"].index(item),
                delta=event.arguments,
            )
        )
        return out

    def _close_calls(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for index in sorted(self.calls):
            item = self.calls[index]
            item["arguments"] = "".join(self.arguments[index])
            item["status"] = self._status() if self.finish else "completed"
            where = self.response["output"].index(item)
            out.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    name=item["name"],
                    output_index=where,
                    arguments=item["arguments"],
                )
            )
            out.append(self.event("response.output_item.done", output_index=where, item=item))
        self.calls.clear()
        self.arguments.clear()
        return out

    def closing(self) -> list[dict[str, Any]]:
        """The terminal event of a complete answer: completed, or incomplete at a limit."""
        assert self.usage is not None
        response = self.response
        response["usage"] = usage_object(self.usage)
        reason = INCOMPLETE_REASONS.get(self.finish or "")
        if reason is None:
            response["status"] = "completed"
            response["completed_at"] = int(time.time())
            return [self.event("response.completed", response=response)]
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": reason}
        return [self.event("response.incomplete", response=response)]

    def failing(self, error: APIError) -> list[dict[str, Any]]:
        """A failure after the stream began: the error event, then the failed response."""
        code = error.code if error.code in ERROR_CODES else "server_error"
        response = self.response
        response["status"] = "failed"
        response["error"] = {"code": code, "message": error.message}
        return [
            self.event("error", code=error.code, message=error.message, param=error.param),
            self.event("response.failed", response=response),
        ]


TERMINAL = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


def replay(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a stored response, as a stream of it would have sent them."""
    writer = ResponseWriter(copy.deepcopy(response), logprobs=False)
    final = writer.response
    output = final["output"]
    start = dict(final, output=[], status="in_progress", completed_at=None)
    start.pop("usage", None)
    start.update(error=None, incomplete_details=None)
    events = [
        writer.event("response.created", response=copy.deepcopy(start)),
        writer.event("response.in_progress", response=copy.deepcopy(start)),
    ]
    for index, item in enumerate(output):
        events += _replay_item(writer, index, item)
    terminal = TERMINAL.get(final["status"])
    if terminal is not None:
        events.append(writer.event(terminal, response=final))
    return events


def _replay_item(writer: ResponseWriter, index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    added = dict(item, status="in_progress")
    if item["type"] == "function_call":
        added["arguments"] = ""
        args = item["arguments"]
        where = {"item_id": item["id"], "output_index": index}
        return [
            writer.event("response.output_item.added", output_index=index, item=added),
            writer.event("response.function_call_arguments.delta", **where, delta=args),
            writer.event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=args
            ),
            writer.event("response.output_item.done", output_index=index, item=item),
        ]
    added["content"] = []
    events = [writer.event("response.output_item.added", output_index=index, item=added)]
    for j, part in enumerate(item.get("content") or []):
        where = {"item_id": item["id"], "output_index": index, "content_index": j}
        if part["type"] == "output_text":
            empty = dict(part, text="", logprobs=[])
            lp = [_delta_logprob(e) for e in part.get("logprobs") or []]
            text = part["text"]
            events += [
                writer.event("response.content_part.added", **where, part=empty),
                writer.event("response.output_text.delta", **where, delta=text, logprobs=lp),
                writer.event(
                    "response.output_text.done",
                    **where,
                    text=text,
                    logprobs=part.get("logprobs") or [],
                ),
            ]
        else:
            refusal = part["refusal"]
            events += [
                writer.event("response.content_part.added", **where, part=dict(part, refusal="")),
                writer.event("response.refusal.delta", **where, delta=refusal),
                writer.event("response.refusal.done", **where, refusal=refusal),
            ]
        events.append(writer.event("response.content_part.done", **where, part=part))
    events.append(writer.event("response.output_item.done", output_index=index, item=item))
    return events
