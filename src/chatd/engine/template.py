"""The model's own chat template (Jinja from the GGUF metadata), rendered in a sandbox."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chatd.backend import BackendError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def content_text(content: Any) -> str:
    """A message's content as one string: its text and refusal parts joined by newlines.

    "\n" between parts is how vLLM flattens content parts for templates that take a string.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append(part.get("text", ""))
        elif part.get("type") == "refusal":
            parts.append(part.get("refusal", ""))
    return "\n".join(parts)


class ChatTemplate:
    """Renders OpenAI messages to the prompt text the model was trained on."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = source or CHATML
        self.template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.knows_developer = "developer" in self.source

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for `messages`, ending with the assistant's turn opened."""
        rendered = [self._message(m) for m in messages]
        try:
            return self.template.render(
                messages=rendered,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as exc:
            raise BackendError(
                f"The model's chat template rejected the messages: {exc}", param="messages"
            ) from exc

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        role = message["role"]
        if role == "developer" and not self.knows_developer:
            role = "system"
        out: dict[str, Any] = {"role": role, "content": content_text(message.get("content"))}
        if message.get("name"):
            out["name"] = message["name"]
        return out
