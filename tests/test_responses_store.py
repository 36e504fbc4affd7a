"""Stored responses on SQLite and PostgreSQL: chains, input items, owner isolation.

The app is chatd's own (`create_app`) on the echo backend, served by uvicorn in a
thread; the client is the official SDK with two API keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.inproc import echo_api
from tests.schema import validate_responses
from tests.store_support import database_url  # noqa: F401

KEYS = ("key-a", "key-b")


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    with echo_api(database_url, tmp_path_factory.mktemp("data") / "chatd", KEYS) as url:
        yield url


def sdk(url: str, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


def raw(client: openai.OpenAI, path: str) -> dict[str, Any]:
    return client.get(path, cast_to=httpx.Response).json()


def test_chain_is_the_conversation(api: str) -> None:
    client = sdk(api)
    first = client.responses.create(model="echo", input="hello there", instructions="Echo.")
    assert first.output_text == "hello there"
    second = client.responses.create(model="echo", input="and again", previous_response_id=first.id)
    assert second.output_text == "and again"
    # the echo backend reports the number of messages it read as input tokens:
    # [user, assistant, user], without the first turn's instructions
    assert second.usage is not None and second.usage.input_tokens == 3
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items.data[1].id == first.output[0].id
    body = raw(client, f"/responses/{second.id}/input_items?order=asc")
    validate_responses("ResponseItemList", body)
    stored = raw(client, f"/responses/{second.id}")
    validate_responses("Response", stored)
    assert stored["previous_response_id"] == first.id


def test_owner_isolation(api: str) -> None:
    mine, theirs = sdk(api, KEYS[0]), sdk(api, KEYS[1])
    made = mine.responses.create(model="echo", input="private words")
    for call in (
        lambda: theirs.responses.retrieve(made.id),
        lambda: theirs.responses.input_items.list(made.id),
        lambda: theirs.responses.delete(made.id),
        lambda: theirs.responses.cancel(made.id),
        lambda: theirs.responses.create(model="echo", input="x", previous_response_id=made.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        validate_responses("ErrorResponse", caught.value.response.json())
    assert mine.responses.retrieve(made.id).output_text == "private words"


def test_pages_and_cursor_errors(api: str) -> None:
    client = sdk(api)
    made = client.responses.create(
        model="echo", input=[{"role": "user", "content": f"m{i}"} for i in range(5)]
    )
    ids = [item.id for item in client.responses.input_items.list(made.id, order="asc").data]
    assert len(ids) == 5 and len(set(ids)) == 5
    page = client.responses.input_items.list(made.id, limit=2, after=ids[-1])  # desc
    assert [item.id for item in page.data] == [ids[3], ids[2]] and page.has_more
    cases = (("after=nope", "after"), ("after=%00", "after"), ("order=up", "order"))
    for query, param in (*cases, ("limit=0", "limit")):
        response = httpx.get(
            f"{api}/v1/responses/{made.id}/input_items?{query}",
            headers={"authorization": f"Bearer {KEYS[0]}"},
        )
        assert response.status_code == 400
        body = response.json()
        validate_responses("ErrorResponse", body)
        assert body["error"]["param"] == param


def test_delete_and_background(api: str) -> None:
    client = sdk(api)
    made = client.responses.create(model="echo", input="run me", background=True)
    assert made.status == "queued"
    deadline = time.monotonic() + 10
    while made.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.02)
        made = client.responses.retrieve(made.id)
    assert made.status == "completed" and made.output_text == "run me"
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(made.id)
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)


def test_ids_postgresql_cannot_hold(api: str) -> None:
    """A NUL in an id gets a 400 (or a 404 for a path), on every store."""
    client = sdk(api)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="echo", input=[{"id": "m\x00", "role": "user", "content": "x"}]
        )
    assert caught.value.response.json()["error"]["param"] == "input[0].id"
    for call in (
        lambda: client.responses.retrieve("resp_\x00"),
        lambda: client.responses.create(model="echo", input="x", previous_response_id="r\x00"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()


def test_key_limits_and_allow_list(tmp_path: Path) -> None:
    """A key's rpm and model allow-list hold on /v1/responses as on chat completions."""
    from tests.test_keys import entry, serve

    keys = [entry("limited", "k-limited", rpm=2, models=["echo"])]
    with serve(tmp_path, keys) as url:
        client = sdk(url, "k-limited")
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(model="echo-alias", input="x")
        assert caught.value.response.json()["error"]["code"] == "model_not_found"
        client.responses.create(model="echo", input="x")
        with pytest.raises(openai.RateLimitError) as limited:
            client.responses.create(model="echo", input="x")
        body = limited.value.response.json()
        validate_responses("ErrorResponse", body)
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert limited.value.response.headers["retry-after"]
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk(url, "wrong").responses.create(model="echo", input="x")
        validate_responses("ErrorResponse", denied.value.response.json())
