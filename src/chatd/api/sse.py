"""Server-sent events: `data: JSON\n\n`, ending with `data: [DONE]`."""

from __future__ import annotations

from typing import Any

import orjson

from chatd.api.errors import APIError

DONE = b"data: [DONE]\n\n"


def sse_event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_error(error: APIError) -> bytes:
    """An error inside a stream: the SDK raises APIError for a `data:` with an `error` key."""
    return sse_event(error.body())
