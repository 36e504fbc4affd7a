"""Both steps of request validation, as the server runs them for the local model."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from chatd.api.capabilities import check_capabilities
from chatd.api.schemas import ChatRequest, parse_chat_request
from chatd.engine.local import CAPABILITIES


def check_request(raw: bytes, input_modalities: Collection[str] | None = None) -> ChatRequest:
    """The spec's checks, then the local model's capabilities (or these input modalities)."""
    chat = parse_chat_request(raw)
    caps = CAPABILITIES
    if input_modalities is not None:
        caps = dataclasses.replace(caps, input_modalities=frozenset(input_modalities))
    check_capabilities(chat.raw, caps)
    return chat
