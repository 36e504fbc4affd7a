"""Constrained decoding: the grammar a choice's output must follow, enforced with llguidance.

At every step `ConstrainedChoice.mask()` allows only the tokens that keep the
output valid, so what the API promises holds even for a tiny model:

- `response_format` `json_object`: one JSON object; `json_schema`: JSON that
  validates against the schema, with `strict: true` and without alike. A schema
  that is not valid JSON Schema, or that the grammar cannot express, is refused
  at plan time (400, `param: response_format`).
- tools (syntax in `chatd.engine.tools`), by `tool_choice`:
  `auto`: free text, and once the model writes `<tool_call` it must complete a
  call to a declared (allowed) tool whose arguments validate against its
  `parameters`; `required`: the output *is* calls, starting at once; `required`
  over exactly one tool (a named tool_choice): exactly one call of it; `none`: no
  grammar at all (the tools are not shown either). `parallel_tool_calls: false`
  and legacy `functions`: at most one call (the output ends with it); otherwise
  calls follow one another on new lines, and a newline after one may still end.
  With `response_format` json too, the content alternative is that JSON instead
  of free text.
- `strict` on a function: `true` refuses (400, `tools[i].function.parameters`)
  a schema with keywords the grammar cannot enforce; `false` ignores those
  keywords and enforces the rest. Arguments are always a JSON object (omitted
  `parameters`: exactly `{}`; a schema without a type is taken as an object).
- custom tools: the input follows the tool's `lark` or `regex` grammar
  (llguidance syntax, as OpenAI's own), or is free text up to `\\n</tool_call>`.

JSON is written compactly (`{"a": 1, "b": [2, 3]}`; a space after `:` and `,` is
optional, no other whitespace), which keeps small models out of whitespace loops.
Grammars are compiled once per distinct text (LRU) and copied for each choice.
Should a matcher fail mid-way (an llguidance resource limit, say), its mask
allows only the end-of-generation tokens: the choice ends, the engine goes on.
"""

from __future__ import annotations

import json
import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Any, Protocol

import llguidance
import numpy as np
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.validators import validator_for

from chatd.backend import (
    BackendError,
    Event,
    FinishReason,
    GenerationRequest,
    ResponseFormat,
    TextDelta,
    TokenLogprob,
    ToolChoice,
    ToolSpec,
)
from chatd.engine import tools as syntax

JSON_STYLE: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ?",
    "key_separator": ": ?",
}
GRAMMAR_CACHE_SIZE = 128


class Vocab(Protocol):
    """What constraints need of the engine's vocabulary (see chatd.engine.runtime)."""

    n_vocab: int
    eog_ids: list[int]
    model: Any  # llama_model_p


# -- tokenizer ---------------------------------------------------------------------------


class Grammars:
    """One model's llguidance tokenizer and its compiled grammars."""

    def __init__(self, tokenizer: llguidance.LLTokenizer) -> None:
        self.tokenizer = tokenizer
        self._compiled: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._checked: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        """A fresh matcher for `grammar`; raises ValueError with llguidance's message."""
        with self._lock:
            template = self._compiled.get(grammar)
            if template is not None:
                self._compiled.move_to_end(grammar)
                return template.deep_copy()
        template = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if template.is_error():
            raise ValueError(template.get_error())
        with self._lock:
            self._compiled[grammar] = template
            while len(self._compiled) > GRAMMAR_CACHE_SIZE:
                self._compiled.popitem(last=False)
        return template.deep_copy()

    def check(self, grammar: str) -> str:
        """llguidance's error for `grammar`, or the empty string."""
        return llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)

    def schema_error(self, schema: Any, *, lenient: bool) -> str:
        """Why `schema` cannot constrain JSON (not JSON Schema, or not expressible), or ""."""
        key = f"{int(lenient)}{json.dumps(schema, ensure_ascii=False)}"
        with self._lock:
            known = self._checked.get(key)
        if known is None:
            known = _metaschema_error(schema) or _short(self.check(_json_grammar(schema, lenient)))
            with self._lock:
                self._checked[key] = known
                while len(self._checked) > GRAMMAR_CACHE_SIZE:
                    self._checked.popitem(last=False)
        return known


_by_vocab: weakref.WeakKeyDictionary[Any, Grammars] = weakref.WeakKeyDictionary()
_by_id: dict[int, Grammars] = {}
_build_lock = threading.Lock()


def build_tokenizer(vocab: Vocab) -> llguidance.LLTokenizer:
    """An llguidance tokenizer of a llama.cpp model (about a second: use `grammars_for`)."""
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # llama_token_get_attr, per token
        return lltokenizer_from_vocab(
            llama_cpp.llama_model_get_vocab(vocab.model),
            n_vocab=vocab.n_vocab,
            eos_token=list(vocab.eog_ids),
        )


def grammars_for(vocab: Vocab) -> Grammars:
    """The model's `Grammars`, built on first use and kept as long as `vocab` lives."""
    with _build_lock:
        try:
            found = _by_vocab.get(vocab)
        except TypeError:
            found = _by_id.get(id(vocab))
        if found is None:
            found = Grammars(build_tokenizer(vocab))
            try:
                _by_vocab[vocab] = found
            except TypeError:
                _by_id[id(vocab)] = found
        return found


# -- grammars ----------------------------------------------------------------------------


def _styled(schema: dict[str, Any], *, lenient: bool = False) -> dict[str, Any]:
    options = {**JSON_STYLE, "lenient": lenient, **(schema.get("x-guidance") or {})}
    return {**schema, "x-guidance": options}


def _metaschema_error(schema: Any) -> str:
    """Why `schema` is not a valid JSON Schema object, or ""."""
    if not isinstance(schema, dict):
        return "schema must be a JSON object."
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return exc.message + (f" (at '{where}')." if where else ".")
    return ""


def _json_grammar(schema: dict[str, Any], lenient: bool = False) -> str:
    return llguidance.LLMatcher.grammar_from_json_schema(_styled(schema, lenient=lenient))


def _short(error: str) -> str:
    """llguidance's message without its parser-state dump."""
    return error.split("\n<state>")[0].split("\n<grammar>")[0].strip()


def response_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The schema the content must follow, or None for free text."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    return {} if response_format.schema is None else response_format.schema


def _lark_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_SHAPED = frozenset(("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const", "not"))


def _parameters(tool: ToolSpec) -> dict[str, Any]:
    """The arguments' schema: no parameters means `{}`; arguments are always an object."""
    if tool.parameters is None:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    if isinstance(tool.parameters, dict) and not _SHAPED & tool.parameters.keys():
        return {**tool.parameters, "type": "object"}
    return tool.parameters


def _custom_rule(rule: str, tool: ToolSpec, side: list[dict[str, Any]]) -> list[str]:
    """Lark rules for one custom tool's call; side grammars go to `side`."""
    head = _lark_literal(f"{syntax.CUSTOM_OPEN}{tool.name}{syntax.CUSTOM_BODY}")
    close = _lark_literal(syntax.CUSTOM_CLOSE)
    spec = tool.grammar or {"type": "text"}
    if spec.get("type") != "grammar":
        return [f"{rule}: {head} {rule}_input", f"{rule}_input[lazy]: /(?s:.*)\\n<\\/tool_call>/"]
    body = spec.get("grammar") or {}
    definition = body.get("definition", "")
    if body.get("syntax") == "regex":
        lark = f"start: /{llguidance.regex_to_lark(definition)}/"
    else:
        lark = definition
    side.append({"name": f"{rule}_input", "lark_grammar": lark})
    return [f"{rule}: {head} @{rule}_input {close}"]


def tool_grammar(
    tools: list[ToolSpec],
    choice: ToolChoice,
    parallel: bool,
    content_schema: dict[str, Any] | None,
) -> str:
    """The llguidance grammar of an output with tool calls (see the module docstring)."""
    allowed = [t for t in tools if choice.names is None or t.name in choice.names]
    single = not parallel or (choice.mode == "required" and len(allowed) == 1)
    trigger = _lark_literal(syntax.TRIGGER)
    separator = _lark_literal(syntax.CALL_SEPARATOR)
    # several calls: a newline after a call may still end the output, not force another call
    calls = "call" if single else f"call ({separator} {trigger} call)* {separator}?"
    lines = ["%llguidance {}"]
    if choice.mode == "required":
        lines.append(f"start: {trigger} calls")
    elif content_schema is not None:
        content = json.dumps(_styled(content_schema), ensure_ascii=False)
        lines += [f"start: content | {trigger} calls", f"content: %json {content}"]
    else:
        lines += [
            "start: TEXT | head calls",
            "TEXT: /(?s:.*)/",
            f"head[lazy]: TEXT {trigger}",
        ]
    lines += [f"calls: {calls}", "call: " + " | ".join(f"t{i}" for i in range(len(allowed)))]
    side: list[dict[str, Any]] = []
    for i, tool in enumerate(allowed):
        if tool.kind == "custom":
            lines += _custom_rule(f"t{i}", tool, side)
            continue
        head = _lark_literal(f"{syntax.FUNCTION_OPEN}{tool.name}{syntax.FUNCTION_ARGS}")
        schema = json.dumps(_styled(_parameters(tool), lenient=not tool.strict), ensure_ascii=False)
        lines.append(f"t{i}: {head} %json {schema} {_lark_literal(syntax.FUNCTION_CLOSE)}")
    main = "\n".join(lines) + "\n"
    if not side:
        return llguidance.LLMatcher.grammar_from_lark(main)
    return json.dumps({"grammars": [{"lark_grammar": main}, *side]})


def _tools_active(request: GenerationRequest) -> bool:
    return bool(request.tools) and (request.tool_choice or ToolChoice()).mode != "none"


def _check_tools(request: GenerationRequest, grammars: Grammars) -> None:
    """Raise BackendError naming the first tool whose definition cannot be compiled."""
    choice = request.tool_choice or ToolChoice()
    names = {t.name for t in request.tools}
    for name in choice.names or []:
        if name not in names:
            raise BackendError(
                f"Invalid value for 'tool_choice': no tool named '{name}' in 'tools'.",
                "tool_choice",
                "invalid_value",
            )
    for i, tool in enumerate(request.tools):
        if tool.kind == "custom":
            side: list[dict[str, Any]] = []
            _custom_rule("t", tool, side)
            error = grammars.check(side[0]["lark_grammar"]) if side else ""
            if error:
                raise BackendError(
                    f"Invalid grammar for custom tool '{tool.name}': {_short(error)}",
                    f"tools[{i}].custom.format",
                    "invalid_value",
                )
            continue
        param = f"tools[{i}].function.parameters"
        if request.legacy_functions:
            param = f"functions[{i}].parameters"
        error = grammars.schema_error(_parameters(tool), lenient=not tool.strict)
        if error:
            raise BackendError(
                f"Invalid schema for function '{tool.name}': {error}",
                param,
                "invalid_function_parameters",
            )


def _check_response_schema(
    response_format: ResponseFormat, schema: Any, grammars: Grammars
) -> None:
    what = (
        f"response_format '{response_format.name}'"
        if response_format.type == "json_schema"
        else "response_format"
    )
    error = grammars.schema_error(schema, lenient=False)
    if error:
        raise BackendError(f"Invalid schema for {what}: {error}", "response_format")


def output_grammar(request: GenerationRequest, grammars: Grammars) -> str | None:
    """The request's grammar (validated: BackendError if not), or None for free output."""
    schema = response_schema(request.response_format)
    if request.response_format is not None and schema is not None:
        _check_response_schema(request.response_format, schema, grammars)
    if _tools_active(request):
        _check_tools(request, grammars)
        parallel = request.parallel_tool_calls and not request.legacy_functions
        return tool_grammar(request.tools, request.tool_choice or ToolChoice(), parallel, schema)
    if schema is None:
        return None
    return _json_grammar(schema)


# -- plan and choices --------------------------------------------------------------------


class ConstrainedChoice:
    """One choice under a grammar: masks, advances and parses (tool calls) its output."""

    __slots__ = ("_bits", "_bytes", "_end", "_index", "_matcher", "_parser", "_pointer")
    unconstrained = False

    def __init__(
        self,
        index: int,
        matcher: llguidance.LLMatcher,
        end: np.ndarray,
        parser: syntax.ToolCallParser | None,
    ) -> None:
        self._index = index
        self._matcher = matcher
        self._end = end
        self._parser = parser
        self._bits = np.zeros((len(end) + 31) // 32, dtype=np.int32)
        self._bytes = self._bits.view(np.uint8)
        self._pointer = self._bits.ctypes.data

    def mask(self) -> np.ndarray:
        """The allowed tokens; only the end-of-generation ones if the grammar failed."""
        matcher = self._matcher
        matcher.unsafe_compute_mask_ptr(self._pointer, self._bytes.size)
        if matcher.is_error():
            return self._end
        return np.unpackbits(self._bytes, count=len(self._end), bitorder="little").view(np.bool_)

    def advance(self, token: int) -> None:
        self._matcher.consume_token(token)

    def must_stop(self) -> bool:
        return self._matcher.is_stopped()

    @property
    def error(self) -> str:
        """Why the grammar rejected a token (empty while all is well)."""
        return self._matcher.get_error()

    def feed(self, text: str, logprobs: list[TokenLogprob] | None) -> list[Event]:
        if self._parser is not None:
            return self._parser.feed(text, logprobs)
        if not text and not logprobs:
            return []
        return [TextDelta(self._index, text, logprobs)]

    def finish(self, reason: FinishReason) -> tuple[list[Event], FinishReason]:
        if self._parser is not None:
            return self._parser.finish(reason)
        return [], reason


class ConstrainedPlan:
    """A compiled grammar; each choice gets its own copy of the matcher."""

    def __init__(
        self, grammars: Grammars, grammar: str, vocab: Vocab, tools: bool, legacy: bool
    ) -> None:
        self._tools = tools
        self._legacy = legacy
        self._template = grammars.matcher(grammar)
        self._end = np.zeros(vocab.n_vocab, dtype=np.bool_)
        self._end[list(vocab.eog_ids)] = True

    def new_choice(self, index: int) -> ConstrainedChoice:
        parser = syntax.ToolCallParser(index, self._legacy) if self._tools else None
        return ConstrainedChoice(index, self._template.deep_copy(), self._end, parser)


def plan_constrained(request: GenerationRequest, vocab: Vocab) -> ConstrainedPlan | None:
    """The plan for a request with structured output or tools; None when output is free."""
    if not needs_grammar(request):
        return None
    grammars = grammars_for(vocab)
    grammar = output_grammar(request, grammars)
    if grammar is None:
        return None
    try:
        return ConstrainedPlan(
            grammars, grammar, vocab, _tools_active(request), request.legacy_functions
        )
    except ValueError as exc:
        param = "tools" if _tools_active(request) else "response_format"
        raise BackendError(f"Invalid grammar: {_short(str(exc))}", param) from None


def needs_grammar(request: GenerationRequest) -> bool:
    """Structured output or active tools: the request's output is constrained."""
    return response_schema(request.response_format) is not None or _tools_active(request)


def warm_up(vocab: Vocab) -> None:
    """Build the model's tokenizer now (about a second) rather than on the first request."""
    grammars_for(vocab)


__all__ = [
    "ConstrainedChoice",
    "ConstrainedPlan",
    "Grammars",
    "grammars_for",
    "needs_grammar",
    "output_grammar",
    "plan_constrained",
    "response_schema",
    "tool_grammar",
    "warm_up",
]
