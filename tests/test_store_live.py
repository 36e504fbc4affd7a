"""Stored completions on live `chatd serve` processes: crash safety and shared PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import MODEL, Server
from tests.store_support import drop_pg_database, fresh_pg_database

KEY = "store-live-key"
SMALL = ("--model-name", MODEL, "--api-key", KEY, "--ctx", "1024", "--parallel", "2")
HELLO = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = fresh_pg_database()
    yield url
    drop_pg_database(url)


def test_stored_completions_on_the_default_server(client: openai.OpenAI) -> None:
    """The whole flow with the real model: store, stream, list, update, messages, delete."""
    run = uuid.uuid4().hex
    made = client.chat.completions.create(
        model=MODEL, messages=HELLO, store=True, max_completion_tokens=8, metadata={"run": run}
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            store=True,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=8,
            metadata={"run": run},
        )
    )
    streamed_id = chunks[0].id
    listed = client.chat.completions.list(metadata={"run": run}, limit=1)
    assert [c.id for c in listed] == [made.id, streamed_id]
    newest = client.chat.completions.list(metadata={"run": run}, order="desc", limit=1)
    assert [c.id for c in newest] == [streamed_id, made.id]
    streamed = client.chat.completions.retrieve(streamed_id)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.choices[0].message.content == text
    assert streamed.usage == chunks[-1].usage and streamed.model == made.model
    updated = client.chat.completions.update(made.id, metadata={"run": run, "seen": "yes"})
    assert updated.metadata == {"run": run, "seen": "yes"}
    (message,) = client.chat.completions.messages.list(made.id)
    assert (message.id, message.role, message.content) == (f"{made.id}-0", "user", "Say hi.")
    assert client.chat.completions.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made.id)


def test_sigkill_right_after_stored_response(tmp_path: Path) -> None:
    """What a client received is on disk: SIGKILL, restart, and both completions are there."""
    server = Server(tmp_path / "data", *SMALL).start()
    try:
        client = server.client(KEY)
        made = client.chat.completions.create(
            model=MODEL, messages=HELLO, store=True, max_completion_tokens=8
        )
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=HELLO, store=True, stream=True, max_completion_tokens=8
            )
        )
        server.stop(kill=True)
        server.start()
        client = server.client(KEY)
        stored = client.chat.completions.retrieve(made.id)
        assert stored.choices[0].message.content == made.choices[0].message.content
        streamed = client.chat.completions.retrieve(chunks[0].id)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed.choices[0].message.content == text
        assert {c.id for c in client.chat.completions.list()} == {made.id, chunks[0].id}
    finally:
        server.stop()
    assert (tmp_path / "data" / "chatd.db").exists()


def test_two_servers_share_postgres(tmp_path: Path, pg_url: str) -> None:
    """Two chatd processes on one database see each other's writes at once."""
    first = Server(tmp_path / "a", *SMALL, "--database-url", pg_url).start()
    try:
        second = Server(tmp_path / "b", *SMALL, "--database-url", pg_url).start()
    except Exception:
        first.stop()
        raise
    try:
        a, b = first.client(KEY), second.client(KEY)
        run = uuid.uuid4().hex
        made = a.chat.completions.create(
            model=MODEL, messages=HELLO, store=True, max_completion_tokens=8, metadata={"run": run}
        )
        seen = b.chat.completions.retrieve(made.id)
        assert seen.choices[0].message.content == made.choices[0].message.content
        b.chat.completions.update(made.id, metadata={"run": run, "by": "second"})
        assert [c.metadata for c in a.chat.completions.list(metadata={"run": run})] == [
            {"run": run, "by": "second"}
        ]
        a.chat.completions.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            b.chat.completions.retrieve(made.id)
    finally:
        second.stop()
        first.stop()
