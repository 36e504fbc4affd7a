"""The second step of validation: what the chosen model can do.

The request's shape is checked against the spec before routing; what a model
supports depends on the backend that serves it, so it is checked after.
"""

from __future__ import annotations

from typing import Any

from chatd.api.validate_messages import check_readable
from chatd.api.validation import unsupported_parameter, unsupported_value
from chatd.backend import Capabilities

# the value of a field that asks for nothing: set to it, a field is not "used"
NEUTRAL: dict[str, Any] = {
    "logprobs": False,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": {},
    "n": 1,
    "parallel_tool_calls": True,
    "store": False,
    "ignore_eos": False,
    "repetition_penalty": 1,
    "min_p": 0,
    "top_k": 0,
}


def is_used(raw: dict[str, Any], key: str) -> bool:
    """Whether the request asks for `key` (present, not null, not its neutral value)."""
    value = raw.get(key)
    if value is None:
        return False
    neutral = NEUTRAL.get(key, ...)
    return not (value == neutral and type(value) is type(neutral))


def check_capabilities(raw: dict[str, Any], caps: Capabilities, model: str | None = None) -> None:
    """Raise a 400 naming the first field `model` cannot honour (and the model, if given)."""
    for key in sorted(caps.unsupported):
        if is_used(raw, key):
            raise unsupported_parameter(key, model)
    if "audio" in (raw.get("modalities") or ()) and not caps.audio_output:
        raise unsupported_value("modalities", "audio", ("text",), model)
    effort = raw.get("reasoning_effort")
    efforts = caps.reasoning_efforts
    if effort is not None and efforts is not None and effort not in efforts:
        raise unsupported_value("reasoning_effort", effort, sorted(efforts), model)
    check_readable(raw["messages"], caps.input_modalities)
