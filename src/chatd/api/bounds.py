"""Sizes a chat request may have, checked before work is done on them.

`check_json_shape` runs on the raw body before it is parsed: how deep the JSON nests (deep
nesting makes parsers and validators recurse) and how many values it holds (each costs
tens of bytes once parsed, so a body of tiny values would grow ~20x in memory).
`check_messages_size` runs on the parsed body before validation: how many messages, how
long each one's text. The limits are generous for real use; see the README.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from chatd.api.errors import APIError
from chatd.api.validation import check_length

MAX_DEPTH = 64  # the request is 1, a tool's parameters 5, leaving ~29 levels of schema
MAX_VALUES = 1_000_000
MAX_MESSAGES = 2048
MAX_CONTENT_CHARS = 10_485_760  # the OpenAI API's limit on one message's content

_STRING = re.compile(rb'"[^"]*"')
_OPENERS = (b"[", b"{")
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(set(range(256)) - set(_BRACKETS))
_NOT_MARKS = bytes(set(range(256)) - set(b'[{,"'))

if TYPE_CHECKING:
    import numpy as np


def too_deep() -> APIError:
    return APIError(
        f"The request's JSON nests deeper than {MAX_DEPTH} levels.",
        code="json_too_deep",
    )


def too_many_values() -> APIError:
    return APIError(
        f"The request's JSON holds more than {MAX_VALUES} values.",
        code="json_too_many_values",
    )


def check_json_shape(body: bytes) -> None:
    """Reject a body nested deeper than MAX_DEPTH or holding over MAX_VALUES values.

    Works on bytes at C speed: escapes are blanked, then strings, leaving the skeleton of
    brackets, commas and scalars. Malformed JSON is left for the parser to reject.
    """
    marks = body.translate(None, _NOT_MARKS)  # one pass; usually a few bytes are left
    opened = sum(marks.count(c) for c in _OPENERS)
    if opened <= MAX_DEPTH and opened + marks.count(b",") + marks.count(b'"') // 2 <= MAX_VALUES:
        return  # counted with the strings' text: over both bounds, so the body is within them
    plain = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    if plain.count(b'"') > 2 * MAX_VALUES:
        raise too_many_values()
    skeleton = _STRING.sub(b"0", plain)
    opened = sum(skeleton.count(c) for c in _OPENERS)
    if opened + skeleton.count(b",") > MAX_VALUES:
        raise too_many_values()
    closed = skeleton.count(b"]") + skeleton.count(b"}")
    if opened > MAX_DEPTH and opened == closed and _depth(skeleton) > MAX_DEPTH:
        raise too_deep()


@cache
def _steps() -> np.ndarray:
    # numpy only here, on the rare deep body: importing it costs a pure gateway 18 MB
    import numpy as np

    steps = np.zeros(256, dtype=np.int32)
    steps[list(b"[{")] = 1
    steps[list(b"]}")] = -1
    return steps


def _depth(skeleton: bytes) -> int:
    import numpy as np

    brackets = np.frombuffer(skeleton.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    return int(np.cumsum(_steps()[brackets]).max(initial=0))


def check_messages_size(messages: Any) -> None:
    """Reject more than MAX_MESSAGES messages or a text over MAX_CONTENT_CHARS."""
    if not isinstance(messages, list):
        return  # validation names the fault
    if len(messages) > MAX_MESSAGES:
        raise APIError(
            "Invalid 'messages': array too long. Expected an array with maximum length "
            f"{MAX_MESSAGES}, but got an array with length {len(messages)} instead.",
            param="messages",
            code="array_above_max_length",
        )
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        param = f"messages[{i}].content"
        if isinstance(content, str):
            check_length(param, content, max_length=MAX_CONTENT_CHARS)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    check_length(f"{param}[{j}].text", text, max_length=MAX_CONTENT_CHARS)
