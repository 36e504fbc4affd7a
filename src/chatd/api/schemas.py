"""The Chat Completions request: `parse_chat_request` validates it, `ChatRequest` carries it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from chatd.api.bounds import check_json_shape, check_messages_size
from chatd.api.errors import APIError
from chatd.api.metadata import validate_metadata
from chatd.api.validate_messages import check_messages, check_tool_sequence
from chatd.api.validate_tools import (
    check_function_call,
    check_functions,
    check_response_format,
    check_tool_choice,
    check_tool_references,
    check_tools,
    resolve_tool_choice,
    tool_specs,
)
from chatd.api.validation import (
    Obj,
    invalid_type,
    invalid_value,
    is_number,
    missing,
    quoted,
)
from chatd.backend import GenerationRequest, ResponseFormat, SamplingParams

JSON_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
SERVICE_TIERS = ("auto", "default", "fast", "flex", "priority", "scale")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
VERBOSITIES = ("low", "medium", "high")
CACHE_RETENTIONS = ("in_memory", "24h")
AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm16")
MODALITIES = ("text", "audio")
INT64 = 2**63
_TOKEN_ID = re.compile(r"[0-9]+")
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(slots=True, kw_only=True)
class ChatRequest:
    """A valid CreateChatCompletionRequest: each field as sent, null read as absent."""

    raw: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    store: bool = False
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream and bool((self.stream_options or {}).get("include_usage"))

    @property
    def prediction_text(self) -> str | None:
        if self.prediction is None:
            return None
        content = self.prediction["content"]
        return content if isinstance(content, str) else "".join(p["text"] for p in content)

    def to_generation(self, model_id: str) -> GenerationRequest:
        sampling = SamplingParams(
            temperature=_float(self.temperature, 1.0),
            top_p=_float(self.top_p, 1.0),
            top_k=self.top_k or 0,
            min_p=_float(self.min_p, 0.0),
            frequency_penalty=_float(self.frequency_penalty, 0.0),
            presence_penalty=_float(self.presence_penalty, 0.0),
            repetition_penalty=_float(self.repetition_penalty, 1.0),
            logit_bias=dict(self.logit_bias),
            seed=self.seed,
        )
        max_tokens = self.max_completion_tokens
        return GenerationRequest(
            model=model_id,
            messages=self.messages,
            n=self.n,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            stop=[stop for stop in self.stop if stop],
            sampling=sampling,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0,
            ignore_eos=self.ignore_eos,
            tools=tool_specs(self.tools, self.functions),
            tool_choice=resolve_tool_choice(self.raw),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            legacy_functions=self.functions is not None,
            response_format=response_format_of(self.response_format),
            prediction=self.prediction_text,
            prompt_cache_key=self.prompt_cache_key,
            passthrough={
                key: self.raw[key] for key in PASSTHROUGH if self.raw.get(key) is not None
            },
            raw=self.raw,
        )


FIELDS = frozenset(f.name for f in fields(ChatRequest)) - {"raw"}
# fields the local engine does not use, carried for remote APIs as the client sent them
PASSTHROUGH = (
    "user",
    "safety_identifier",
    "metadata",
    "store",
    "service_tier",
    "reasoning_effort",
    "verbosity",
    "modalities",
    "audio",
    "web_search_options",
    "moderation",
    "prompt_cache_retention",
    "prompt_cache_options",
    "stream_options",
)


def response_format_of(raw: dict[str, Any] | None) -> ResponseFormat | None:
    if raw is None:
        return None
    if raw["type"] != "json_schema":
        return ResponseFormat(type=raw["type"])
    spec = raw.get("json_schema") or {}
    return ResponseFormat(
        type="json_schema",
        schema=spec.get("schema"),
        name=spec.get("name", "response"),
        description=spec.get("description"),
        strict=bool(spec.get("strict")),
    )


def _float(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a request body against the spec, as the OpenAI API does; APIError on a fault.

    What the chosen model can do is checked after routing (`api.capabilities`).
    """
    raw = decode_json(body)
    if "model" not in raw:
        raise APIError("you must provide a model parameter")
    if "messages" not in raw:
        raise missing("messages")
    check_messages_size(raw["messages"])
    for key in raw:
        if key not in FIELDS:
            raise APIError(f"Unrecognized request argument supplied: {key}")
    values = _check_fields(Obj(raw))
    _check_combinations(raw)
    check_tool_sequence(raw["messages"])
    return ChatRequest(raw=raw, **values)


def decode_json(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object: bounded, finite numbers, no lone surrogates."""
    check_json_shape(body)
    try:
        raw = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise APIError(JSON_ERROR) from None
    if not isinstance(raw, dict) or (_ESCAPED_SURROGATE.search(body) and _has_surrogates(raw)):
        raise APIError(JSON_ERROR)
    return raw


def _has_surrogates(raw: dict[str, Any]) -> bool:
    """Whether an escape left a lone surrogate, which no UTF-8 text can carry."""
    try:
        json.dumps(raw, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _no_constant(name: str) -> float:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _check_fields(body: Obj) -> dict[str, Any]:
    """Each field alone, in the order the API reports them; returns the normalised values."""
    check_messages(body)
    body.text("model")
    check_functions(body)
    check_function_call(body)
    check_tools(body)
    check_tool_choice(body)
    body.boolean("parallel_tool_calls")
    body.integer("max_completion_tokens", minimum=1)
    body.integer("max_tokens", minimum=1)
    body.integer("n", minimum=1, maximum=128)
    stop = _stop(body)
    body.decimal("temperature", minimum=0, maximum=2)
    body.decimal("top_p", minimum=0, maximum=1)
    body.decimal("presence_penalty", minimum=-2, maximum=2)
    body.decimal("frequency_penalty", minimum=-2, maximum=2)
    logit_bias = _logit_bias(body)
    body.boolean("logprobs")
    body.integer("top_logprobs", minimum=0, maximum=20)
    body.string("user")
    body.integer("seed", minimum=-INT64, maximum=INT64 - 1)
    body.string("safety_identifier", max_length=64)
    _prompt_cache_options(body)
    body.string("prompt_cache_key")
    _prompt_cache_retention(body)
    _one_of(body, "service_tier", SERVICE_TIERS)
    body.boolean("stream")
    _stream_options(body)
    body.boolean("store")
    metadata = validate_metadata(body.value("metadata"))
    body.enum("verbosity", VERBOSITIES)
    body.enum("reasoning_effort", REASONING_EFFORTS)
    check_response_format(body)
    _modalities(body)
    _audio(body)
    _prediction(body)
    _web_search_options(body)
    _moderation(body)
    body.integer("top_k", minimum=0)
    body.decimal("min_p", minimum=0, maximum=1)
    body.decimal("repetition_penalty", minimum=0, maximum=2, exclusive_minimum=True)
    body.boolean("ignore_eos")
    values = {key: value for key, value in body.data.items() if value is not None}
    values.update(stop=stop, logit_bias=logit_bias)
    if body.has("metadata"):
        values["metadata"] = metadata
    return values


def _stop(body: Obj) -> list[str]:
    value = body.value("stop")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise invalid_type("stop", "one of a string or array of strings", value)
    body.array("stop", max_items=4)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid_type(f"stop[{i}]", "a string", item)
    return list(value)


def _logit_bias(body: Obj) -> dict[int, float]:
    bias = body.object("logit_bias")
    if bias is None:
        return {}
    result: dict[int, float] = {}
    for key, value in bias.data.items():
        if not _TOKEN_ID.fullmatch(key):
            raise APIError(
                f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                "non-negative integers.",
                param="logit_bias",
            )
        if not is_number(value):
            raise invalid_type(bias.path(key), "a decimal", value)
        if not -100 <= value <= 100:
            shown = repr(float(value)) if abs(value) < 1e300 else str(value)
            raise APIError(
                f"Logit bias value {shown} is invalid or outside of range [-100, 100]",
                param="logit_bias",
            )
        result[int(key)] = float(value)
    return result


def _one_of(body: Obj, key: str, allowed: tuple[str, ...]) -> None:
    """A string enum whose type error lists the values."""
    value = body.value(key)
    if value is not None and not isinstance(value, str):
        raise invalid_type(key, f"one of {quoted(allowed, 'or')}", value)
    body.enum(key, allowed)


def _prompt_cache_retention(body: Obj) -> None:
    value = body.value("prompt_cache_retention")
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid_type(
            "prompt_cache_retention", f"one of {quoted(CACHE_RETENTIONS, 'or')}", value
        )
    if value not in CACHE_RETENTIONS:
        raise APIError("Invalid prompt_cache_retention argument", param="prompt_cache_retention")


def _prompt_cache_options(body: Obj) -> None:
    options = body.object("prompt_cache_options")
    if options is not None:
        options.only(("ttl", "mode"))
        options.enum("ttl", ("30m",))
        options.enum("mode", ("implicit", "explicit"))


def _stream_options(body: Obj) -> None:
    options = body.object("stream_options")
    if options is not None:
        options.only(("include_usage", "include_obfuscation"))
        options.boolean("include_usage")
        options.boolean("include_obfuscation")


def _modalities(body: Obj) -> None:
    modalities = body.array("modalities", expected="an array of strings")
    if modalities is None:
        return
    for i, modality in enumerate(modalities):
        if not isinstance(modality, str):
            raise invalid_type(f"modalities[{i}]", "a string", modality)
        if modality not in MODALITIES:
            raise invalid_value(f"modalities[{i}]", modality, MODALITIES)
    if sorted(modalities) not in (["text"], ["audio", "text"]):
        raise APIError(
            "Invalid value for 'modalities'. Only ['text'] and ['text', 'audio'] are supported.",
            param="modalities",
            code="invalid_value",
        )


def _audio(body: Obj) -> None:
    audio = body.object("audio")
    if audio is None:
        return
    voice = audio.value("voice", required=True)
    if isinstance(voice, dict):
        custom = Obj(voice, audio.path("voice"))
        custom.text("id")
        custom.only(("id",))
    elif not isinstance(voice, str):
        raise invalid_type(audio.path("voice"), "one of a string or object", voice)
    audio.pick("format", AUDIO_FORMATS)
    audio.only(("voice", "format"))


def _prediction(body: Obj) -> None:
    prediction = body.object("prediction")
    if prediction is None:
        return
    prediction.pick("type", ("content",))
    content = prediction.value("content", required=True)
    param = prediction.path("content")
    if isinstance(content, list):
        parts = prediction.objects("content", min_items=1) or []
        for part in parts:
            part.pick("type", ("text",))
            part.text("text")
            part.only(("type", "text"))
    elif not isinstance(content, str):
        raise invalid_type(param, "one of a string or array of objects", content)
    prediction.only(("type", "content"))


def _web_search_options(body: Obj) -> None:
    options = body.object("web_search_options")
    if options is None:
        return
    location = options.object("user_location")
    if location is not None:
        location.pick("type", ("approximate",))
        approximate = location.child("approximate")
        for key in ("country", "region", "city", "timezone"):
            approximate.string(key)
        approximate.only(("country", "region", "city", "timezone"))
        location.only(("type", "approximate"))
    options.enum("search_context_size", ("low", "medium", "high"))
    options.only(("user_location", "search_context_size"))


def _moderation(body: Obj) -> None:
    moderation = body.object("moderation")
    if moderation is None:
        return
    moderation.text("model")
    policy = moderation.object("policy")
    if policy is not None:
        for key in ("input", "output"):
            config = policy.object(key)
            if config is not None:
                config.pick("mode", ("score", "block"))
                config.only(("mode",))
        policy.only(("input", "output"))
    moderation.only(("model", "policy"))


def _check_combinations(raw: dict[str, Any]) -> None:
    """Faults of fields that are each valid alone."""
    if raw.get("max_tokens") is not None and raw.get("max_completion_tokens") is not None:
        raise APIError(
            "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
            param="max_tokens",
            code="invalid_parameter_combination",
        )
    _needs(raw, "top_logprobs", "logprobs")
    _needs(raw, "stream_options", "stream")
    check_tool_references(raw)
    _needs(raw, "metadata", "store")


def _needs(raw: dict[str, Any], key: str, needs: str) -> None:
    if raw.get(key) is not None and raw.get(needs) is not True:
        raise APIError(
            f"The '{key}' parameter is only allowed when '{needs}' is enabled.", param=key
        )
