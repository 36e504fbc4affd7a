"""Tool calls in plain text: how tools are shown to the model and how its calls are read back.

The model sees the tools in a system-prompt section (Hermes / Qwen2.5 style, the
rendering most open models were trained on) and calls them in this syntax:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A custom tool (free-form input) is called as

    <tool_call name="run_sql">
    SELECT 1
    </tool_call>

Several calls follow one another, separated by one newline. Text may come
before the first call (it becomes `message.content`); nothing comes after the
last one. The grammar in `chatd.engine.constraints` enforces exactly this
layout, so `ToolCallParser` can read it back as a stream without guessing.

Multi-turn: assistant calls are rendered back in the same syntax, and tool
results as a user turn of `<tool_response>` blocks (Qwen2.5's convention), so
that a template without tool support (SmolLM2's) carries a conversation with
tools. With `tool_choice: "none"` the tools are not shown at all.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from chatd.backend import (
    Event,
    FinishReason,
    GenerationRequest,
    ResponseFormat,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from chatd.engine.template import content_text
from chatd.ids import base62

TRIGGER = "<tool_call"
FUNCTION_OPEN = '>\n{"name": "'
FUNCTION_ARGS = '", "arguments": '
FUNCTION_CLOSE = "}\n</tool_call>"
CUSTOM_OPEN = ' name="'
CUSTOM_BODY = '">\n'
CUSTOM_CLOSE = "\n</tool_call>"
CALL_SEPARATOR = "\n"


def new_call_id() -> str:
    """An OpenAI-shaped tool call id: `call_` and 24 random alphanumerics."""
    return "call_" + base62(24)


# -- rendering ---------------------------------------------------------------------------


def _tool_signature(tool: ToolSpec) -> dict[str, Any]:
    if tool.kind == "custom":
        body: dict[str, Any] = {"name": tool.name}
        if tool.description:
            body["description"] = tool.description
        if tool.grammar and tool.grammar.get("type") == "grammar":
            body["format"] = tool.grammar
        return {"type": "custom", "custom": body}
    body = {"name": tool.name}
    if tool.description:
        body["description"] = tool.description
    body["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": body}


def render_tools_prompt(
    tools: list[ToolSpec],
    tool_choice: ToolChoice | None,
    legacy_functions: bool = False,
    parallel_tool_calls: bool = True,
) -> str | None:
    """The system-prompt section that describes the tools and the call syntax (None: no tools)."""
    choice = tool_choice or ToolChoice()
    if not tools or choice.mode == "none":
        return None
    lines = [
        "# Tools",
        "",
        "You may call one or more functions to assist with the user query.",
        "",
        "You are provided with function signatures within <tools></tools> XML tags:",
        "<tools>",
        *(json.dumps(_tool_signature(t), ensure_ascii=False) for t in tools),
        "</tools>",
        "",
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:",
        "<tool_call>",
        '{"name": <function-name>, "arguments": <args-json-object>}',
        "</tool_call>",
    ]
    if any(t.kind == "custom" for t in tools):
        lines += [
            "",
            'A tool of type "custom" takes free-form input (in its format, if given) '
            "instead of JSON arguments; call it as:",
            '<tool_call name="<tool-name>">',
            "<input>",
            "</tool_call>",
        ]
    rules = []
    if choice.names is not None and len(choice.names) < len(tools):
        rules.append("You may only call: " + ", ".join(choice.names) + ".")
    if choice.mode == "required":
        if choice.names is not None and len(choice.names) == 1:
            rules.append(f"You must call {choice.names[0]} now.")
        else:
            rules.append("You must call at least one function now.")
    if legacy_functions or not parallel_tool_calls:
        rules.append("Call at most one function.")
    if rules:
        lines += ["", *rules]
    return "\n".join(lines)


def render_response_format_prompt(response_format: ResponseFormat | None) -> str | None:
    """A system-prompt line that tells the model which JSON to write (None: plain text)."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return "Respond with a JSON object."
    schema = json.dumps(response_format.schema or {}, ensure_ascii=False)
    return f"Respond with JSON that matches this JSON Schema:\n{schema}"


def _render_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except ValueError:
            return json.dumps(arguments, ensure_ascii=False)
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def render_tool_call(kind: str, name: str, payload: Any) -> str:
    """One call in the model's syntax; payload is the arguments (function) or input (custom)."""
    if kind == "custom":
        return f"{TRIGGER}{CUSTOM_OPEN}{name}{CUSTOM_BODY}{payload or ''}{CUSTOM_CLOSE}"
    return (
        f"{TRIGGER}{FUNCTION_OPEN}{name}{FUNCTION_ARGS}{_render_arguments(payload)}{FUNCTION_CLOSE}"
    )


def render_assistant_tool_calls(message: dict[str, Any]) -> str:
    """An assistant message (content, tool_calls or legacy function_call) as the model wrote it."""
    calls = []
    for call in message.get("tool_calls") or []:
        if call.get("type") == "custom":
            custom = call.get("custom") or {}
            calls.append(render_tool_call("custom", custom.get("name", ""), custom.get("input")))
        else:
            function = call.get("function") or {}
            calls.append(
                render_tool_call("function", function.get("name", ""), function.get("arguments"))
            )
    if message.get("function_call"):
        function = message["function_call"]
        calls.append(
            render_tool_call("function", function.get("name", ""), function.get("arguments"))
        )
    text = content_text(message.get("content")).rstrip()
    parts = [text] if text else []
    if calls:
        parts.append(CALL_SEPARATOR.join(calls))
    return "\n".join(parts)


def render_tool_result(message: dict[str, Any]) -> str:
    """A `tool` (or legacy `function`) message as a `<tool_response>` block."""
    return f"<tool_response>\n{content_text(message.get('content'))}\n</tool_response>"


def prepare_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """The request's messages rewritten for a chat template without tool support.

    The tools (and the JSON the answer must be) go into the first system message
    (or a new one), assistant tool calls become text in the call syntax, and runs
    of tool results become one user message.
    """
    sections = [
        render_tools_prompt(
            request.tools,
            request.tool_choice,
            request.legacy_functions,
            request.parallel_tool_calls,
        ),
        render_response_format_prompt(request.response_format),
    ]
    extra = "\n\n".join(s for s in sections if s)
    out: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.get("role")
        if role in ("tool", "function"):
            block = render_tool_result(message)
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        elif role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            out.append({"role": "assistant", "content": render_assistant_tool_calls(message)})
        else:
            out.append(message)
    for message in out:
        message.pop("_tool_results", None)
    if extra:
        if out and out[0].get("role") in ("system", "developer"):
            first = out[0]
            text = content_text(first.get("content"))
            out[0] = {**first, "content": f"{text}\n\n{extra}" if text else extra}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


# -- parsing -----------------------------------------------------------------------------


def _held_prefix(buffer: str, marker: str) -> int:
    """Length of the longest end of `buffer` that `marker` starts with (and could complete)."""
    for size in range(min(len(buffer), len(marker) - 1), 0, -1):
        if marker.startswith(buffer[-size:]):
            return size
    return 0


State = Literal["text", "head", "function", "custom"]
CallKind = Literal["function", "custom"]

# how each kind of call opens: (after TRIGGER, what ends its name, kind)
_HEADS: tuple[tuple[str, str, CallKind], ...] = (
    (FUNCTION_OPEN, FUNCTION_ARGS, "function"),
    (CUSTOM_OPEN, CUSTOM_BODY, "custom"),
)


class ToolCallParser:
    """Streams a choice's text into TextDelta / ToolCallDelta events.

    Text that might begin a call (a partial `<tool_call`, trailing whitespace) and
    the end of arguments that might begin `}\\n</tool_call>` are held back until
    the next piece of text tells; logprobs ride on the next event emitted.
    """

    __slots__ = ("_buffer", "_calls", "_index", "_legacy", "_logprobs", "_state")

    def __init__(self, index: int, legacy_functions: bool = False) -> None:
        self._index = index
        self._legacy = legacy_functions
        self._buffer = ""
        self._state: State = "text"
        self._calls = 0
        self._logprobs: list[TokenLogprob] = []

    @property
    def calls(self) -> int:
        return self._calls

    def feed(self, text: str, logprobs: list[TokenLogprob] | None) -> list[Event]:
        if logprobs:
            self._logprobs.extend(logprobs)
        self._buffer += text
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def finish(self, reason: FinishReason) -> tuple[list[Event], FinishReason]:
        events: list[Event] = []
        rest, self._buffer = self._buffer, ""
        if self._state == "text":
            if reason == "length" and rest.strip() and TRIGGER.startswith(rest.strip()):
                rest = ""  # a call's opening cut by max_tokens is markup, not the answer's text
            if rest and not (self._calls and not rest.strip()):
                self._text(events, rest)
            elif self._logprobs and not self._calls:
                self._text(events, "")
        elif self._state in ("function", "custom") and rest:
            self._arguments(events, rest)
        if self._calls and reason == "stop":
            reason = "function_call" if self._legacy else "tool_calls"
        return events, reason

    def _take_logprobs(self) -> list[TokenLogprob] | None:
        if not self._logprobs:
            return None
        taken, self._logprobs = self._logprobs, []
        return taken

    def _text(self, events: list[Event], text: str) -> None:
        events.append(TextDelta(self._index, text, self._take_logprobs()))

    def _arguments(self, events: list[Event], text: str) -> None:
        events.append(
            ToolCallDelta(self._index, self._calls - 1, text, logprobs=self._take_logprobs())
        )

    def _step(self, events: list[Event]) -> bool:
        """Consume what the buffer settles; False when it must wait for more text."""
        buffer = self._buffer
        if self._state == "text":
            at = buffer.find(TRIGGER)
            if at >= 0:
                head = buffer[:at].rstrip()
                if head:
                    self._text(events, head)
                self._buffer = buffer[at + len(TRIGGER) :]
                self._state = "head"
                return True
            keep = len(buffer) - _held_prefix(buffer, TRIGGER)
            keep = len(buffer[:keep].rstrip())
            if keep:
                self._text(events, buffer[:keep])
                self._buffer = buffer[keep:]
            return False
        if self._state == "head":
            return self._head(events, buffer)
        close = FUNCTION_CLOSE if self._state == "function" else CUSTOM_CLOSE
        at = buffer.find(close)
        if at >= 0:
            if at:
                self._arguments(events, buffer[:at])
            self._buffer = buffer[at + len(close) :]
            self._state = "text"
            return True
        keep = len(buffer) - _held_prefix(buffer, close)
        if keep:
            self._arguments(events, buffer[:keep])
            self._buffer = buffer[keep:]
        return False

    def _head(self, events: list[Event], buffer: str) -> bool:
        for opening, closing, kind in _HEADS:
            if buffer.startswith(opening):
                end = buffer.find(closing, len(opening))
                if end < 0:
                    return False
                name = buffer[len(opening) : end]
                self._calls += 1
                events.append(
                    ToolCallDelta(
                        self._index,
                        self._calls - 1,
                        "",
                        id=new_call_id(),
                        kind=kind,
                        name=name,
                        logprobs=self._take_logprobs(),
                    )
                )
                self._buffer = buffer[end + len(closing) :]
                self._state = kind
                return True
            if opening.startswith(buffer):
                return False
        self._buffer = TRIGGER + buffer
        self._state = "text"
        keep = len(TRIGGER) + (1 if buffer else 0)
        self._text(events, self._buffer[:keep])
        self._buffer = self._buffer[keep:]
        return True
