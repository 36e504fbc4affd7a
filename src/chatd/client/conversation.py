"""The conversation and the request settings that `chatd chat` sends with it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Conversation:
    """Messages so far plus the settings of the next request."""

    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other request fields (`/set`)
    turns: list[dict[str, Any]] = field(default_factory=list)  # user and assistant messages

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The `messages` of the next request: the system prompt first, if any."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def request(self, text: str) -> dict[str, Any]:
        """Keyword arguments of `chat.completions.create` for a new user message."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [*self.messages, {"role": "user", "content": text}],
        }
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.extra:
            kwargs["extra_body"] = dict(self.extra)
        return kwargs

    def add_exchange(self, text: str, answer: str) -> None:
        self.turns.append({"role": "user", "content": text})
        self.turns.append({"role": "assistant", "content": answer})

    def clear(self) -> None:
        """Forget the messages; the system prompt and settings stay."""
        self.turns.clear()

    def save(self, path: Path) -> None:
        """Write the messages list as JSON (the system prompt first, if any)."""
        path.write_text(json.dumps(self.messages, indent=2, ensure_ascii=False) + "\n")
