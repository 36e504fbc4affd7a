"""The slash commands of `chatd chat`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatd.client.app import Chat


class Quit(Exception):
    """Leave the program."""


class UsageError(Exception):
    """A command given a wrong argument; the message says what it takes."""


@dataclass(frozen=True)
class Command:
    run: Callable[[Chat, str], None]
    usage: str
    help: str


def _model(chat: Chat, arg: str) -> None:
    if arg:
        chat.conversation.model = arg
        chat.info(f"model: {arg}")
        return
    ids = [model.id for model in chat.client.models.list().data]
    listed = ", ".join(ids) if ids else "none listed"
    chat.info(f"model: {chat.conversation.model} (the server has: {listed})")


def _system(chat: Chat, arg: str) -> None:
    chat.conversation.system = arg or None
    chat.info(f"system prompt: {arg}" if arg else "system prompt removed")


def _temperature(chat: Chat, arg: str) -> None:
    try:
        value = float(arg) if arg else None
    except ValueError:
        raise UsageError(COMMANDS["temperature"].usage) from None
    chat.conversation.temperature = value
    chat.info(f"temperature: {value}" if value is not None else "temperature: server default")


def _max_tokens(chat: Chat, arg: str) -> None:
    try:
        value = int(arg) if arg else None
    except ValueError:
        raise UsageError(COMMANDS["max_tokens"].usage) from None
    chat.conversation.max_tokens = value
    chat.info(f"max tokens: {value}" if value is not None else "max tokens: server default")


def _set(chat: Chat, arg: str) -> None:
    name, _, raw = arg.partition(" ")
    if not name:
        chat.info(f"extra fields: {json.dumps(chat.conversation.extra)}")
        return
    if not raw.strip():
        chat.conversation.extra.pop(name, None)
        chat.info(f"{name}: removed")
        return
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()  # a bare word is a string
    chat.conversation.extra[name] = value
    chat.info(f"{name}: {json.dumps(value)}")


def _save(chat: Chat, arg: str) -> None:
    if not arg:
        raise UsageError(COMMANDS["save"].usage)
    path = Path(arg).expanduser()
    try:
        chat.conversation.save(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    chat.info(f"saved {len(chat.conversation.messages)} messages to {path}")


def _clear(chat: Chat, arg: str) -> None:
    chat.conversation.clear()
    chat.info("conversation cleared")


def _help(chat: Chat, arg: str) -> None:
    lines = [f"{c.usage:<22} {c.help}" for c in COMMANDS.values()]
    lines += [
        "",
        "A line that starts with // is sent as text, with one / removed.",
        "Enter sends; Alt-Enter or Esc Enter starts a new line (pasted text keeps its",
        "lines). Up/Down recall earlier inputs. Ctrl-C stops an answer, or clears the",
        "line; Ctrl-D on an empty line leaves.",
    ]
    chat.info("\n".join(lines))


def _quit(chat: Chat, arg: str) -> None:
    raise Quit


COMMANDS: dict[str, Command] = {
    "model": Command(_model, "/model [NAME]", "use model NAME; alone: show it and the list"),
    "system": Command(_system, "/system [TEXT]", "set the system prompt; alone: remove it"),
    "temperature": Command(_temperature, "/temperature [X]", "sampling temperature"),
    "max_tokens": Command(_max_tokens, "/max_tokens [N]", "most tokens per answer"),
    "set": Command(
        _set, "/set [NAME [JSON]]", "any other request field, e.g. /set seed 42; no value: remove"
    ),
    "save": Command(_save, "/save FILE", "write the conversation (its messages) as JSON"),
    "clear": Command(_clear, "/clear", "forget the conversation (settings stay)"),
    "help": Command(_help, "/help", "this list"),
    "quit": Command(_quit, "/quit", "leave (also /exit, Ctrl-D)"),
}
ALIASES = {"exit": "quit", "max-tokens": "max_tokens"}


def run_command(chat: Chat, line: str) -> None:
    """Run a `/name arg` line; an unknown name or a bad argument raises UsageError."""
    name, _, arg = line[1:].partition(" ")
    command = COMMANDS.get(ALIASES.get(name, name))
    if command is None:
        raise UsageError(f"unknown command /{name}; /help lists them")
    command.run(chat, arg.strip())
