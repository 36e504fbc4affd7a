"""`chatd chat`: a terminal client for chatd or any OpenAI-compatible server.

Only the options live here: `chatd serve` builds its parser from this module, so it
must not import the client's own dependencies (openai, rich, prompt_toolkit).
"""

from __future__ import annotations

import argparse
import os

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _first_env(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `chatd chat` and its options."""
    chat = commands.add_parser(
        "chat",
        help="chat with a running chatd (or any OpenAI-compatible server) in the terminal",
        description="Enter sends, Alt-Enter (or Esc then Enter) starts a new line, Ctrl-C "
        "stops an answer, Ctrl-D or /quit leaves; /help lists the commands.",
    )
    chat.add_argument(
        "--base-url",
        default=_first_env("CHATD_BASE_URL", "OPENAI_BASE_URL") or DEFAULT_BASE_URL,
        help=f"the API's base URL (env CHATD_BASE_URL, OPENAI_BASE_URL; {DEFAULT_BASE_URL})",
    )
    chat.add_argument(
        "--api-key",
        default=_first_env("CHATD_API_KEY", "OPENAI_API_KEY"),
        help="API key (env CHATD_API_KEY, OPENAI_API_KEY)",
    )
    chat.add_argument("--model", help="model id (default: the first of GET /models)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--temperature", type=float, help="sampling temperature")
    chat.add_argument("--max-tokens", type=int, help="most tokens per answer")
    chat.add_argument(
        "--history",
        help="file of past inputs (default: chat_history in the user's state folder)",
    )


def main(args: argparse.Namespace) -> int:
    """Run `chatd chat`; the exit status."""
    from chatd.client.app import run

    return run(args)
