"""The stored-completion endpoints over HTTP with the official SDK, on SQLite and PostgreSQL.

The app is chatd's own (`create_app`) on an echo backend, served by uvicorn in a thread:
everything but the model is real.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.inproc import echo_api
from tests.schema import validate
from tests.store_support import database_url  # noqa: F401

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = ("key-a", "key-b")


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    with echo_api(database_url, tmp_path_factory.mktemp("data") / "chatd", KEYS) as url:
        yield url


def sdk(url: str, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def client(api: str) -> openai.OpenAI:
    return sdk(api)


@pytest.fixture
def run() -> str:
    """A metadata value unique to the test, to filter its own completions."""
    return uuid.uuid4().hex[:12]


def create(client: openai.OpenAI, text: str = "hello there", **kwargs: Any) -> Any:
    kwargs.setdefault("messages", [{"role": "user", "content": text}])
    return client.chat.completions.create(model="echo", store=True, **kwargs)


def raw_json(client: openai.OpenAI, path: str) -> dict[str, Any]:
    response = client.get(path, cast_to=httpx.Response)
    return response.json()


def test_create_then_retrieve(client: openai.OpenAI, run: str) -> None:
    made = create(client, metadata={"run": run}, temperature=0.5)
    stored = client.chat.completions.retrieve(made.id)
    assert stored.id == made.id and stored.created == made.created
    assert stored.choices[0].message.content == "hello there"
    assert stored.metadata == {"run": run}
    assert stored.usage == made.usage and stored.model == "echo"
    body = raw_json(client, f"/chat/completions/{made.id}")
    validate("CreateChatCompletionResponse", body)
    assert body["temperature"] == 0.5


def test_not_stored_without_store(client: openai.OpenAI) -> None:
    made = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made.id)


def test_streamed_completion_is_stored(client: openai.OpenAI, run: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "one two three"}],
            store=True,
            stream=True,
            metadata={"run": run},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stored = client.chat.completions.retrieve(chunks[0].id)
    assert stored.choices[0].message.content == text == "one two three"
    assert stored.choices[0].finish_reason == "stop" and stored.metadata == {"run": run}


def test_list_pages_and_filters(client: openai.OpenAI, run: str) -> None:
    made = [create(client, f"n{i}", metadata={"run": run, "odd": str(i % 2)}).id for i in range(5)]
    pages = client.chat.completions.list(metadata={"run": run}, limit=2)
    assert [c.id for c in pages] == made
    assert pages.has_more and len(pages.data) == 2
    backwards = client.chat.completions.list(metadata={"run": run}, limit=2, order="desc")
    assert [c.id for c in backwards] == made[::-1]
    odd = client.chat.completions.list(metadata={"run": run, "odd": "1"}, limit=1)
    assert [c.id for c in odd] == [made[1], made[3]]
    assert all(c.metadata == {"run": run, "odd": "1"} for c in odd)
    by_model = client.chat.completions.list(model="echo", metadata={"run": run}, limit=3)
    assert [c.id for c in by_model] == made
    assert list(client.chat.completions.list(model="other", metadata={"run": run})) == []
    body = raw_json(client, f"/chat/completions?metadata[run]={run}&limit=2&after={made[1]}")
    validate("ChatCompletionList", body)
    assert (body["first_id"], body["last_id"], body["has_more"]) == (made[2], made[3], True)


def test_update_metadata(client: openai.OpenAI, run: str) -> None:
    made = create(client, metadata={"run": run, "stage": "draft"})
    updated = client.chat.completions.update(made.id, metadata={"run": run, "stage": "final"})
    assert updated.id == made.id and updated.metadata == {"run": run, "stage": "final"}
    assert client.chat.completions.retrieve(made.id).metadata["stage"] == "final"
    assert [
        c.id for c in client.chat.completions.list(metadata={"stage": "final", "run": run})
    ] == [made.id]
    assert list(client.chat.completions.list(metadata={"stage": "draft", "run": run})) == []


def test_messages(client: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "describe"}]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi", "name": "ann"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": parts},
    ]
    made = create(client, messages=messages)
    listed = list(client.chat.completions.messages.list(made.id, limit=1))
    assert [m.id for m in listed] == [f"{made.id}-{i}" for i in range(4)]
    assert [m.role for m in listed] == ["system", "user", "assistant", "user"]
    assert listed[0].content == "be brief" and listed[0].content_parts is None
    assert listed[3].content == "describe" and listed[3].content_parts[0].text == "describe"
    desc = client.chat.completions.messages.list(made.id, order="desc", limit=3)
    assert [m.id for m in desc.data] == [f"{made.id}-{i}" for i in (3, 2, 1)] and desc.has_more
    body = raw_json(client, f"/chat/completions/{made.id}/messages?after={made.id}-2")
    assert [m["id"] for m in body["data"]] == [f"{made.id}-3"] and body["has_more"] is False


def test_delete_then_404(client: openai.OpenAI, run: str) -> None:
    made = create(client, metadata={"run": run})
    deleted = client.chat.completions.delete(made.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        made.id,
        True,
        "chat.completion.deleted",
    )
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.retrieve(made.id)
    error = caught.value.response.json()
    validate("ErrorResponse", error)
    assert error["error"] == {
        "message": f"No chat completion found with id '{made.id}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    for call in (
        lambda: client.chat.completions.delete(made.id),
        lambda: client.chat.completions.update(made.id, metadata={}),
        lambda: client.chat.completions.messages.list(made.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(client.chat.completions.list(metadata={"run": run})) == []


def test_keys_are_isolated(api: str, run: str) -> None:
    a, b = sdk(api, KEYS[0]), sdk(api, KEYS[1])
    made = create(a, metadata={"run": run})
    theirs = create(b, metadata={"run": run})
    assert [c.id for c in b.chat.completions.list(metadata={"run": run})] == [theirs.id]
    for call in (
        lambda: b.chat.completions.retrieve(made.id),
        lambda: b.chat.completions.update(made.id, metadata={"x": "y"}),
        lambda: b.chat.completions.delete(made.id),
        lambda: b.chat.completions.messages.list(made.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert a.chat.completions.retrieve(made.id).metadata == {"run": run}
    with pytest.raises(openai.AuthenticationError):
        sdk(api, "wrong").chat.completions.list()


@pytest.mark.parametrize(
    "example",
    json.loads((FIXTURES / "metadata_errors.json").read_text()),
    ids=lambda example: example["body"]["error"]["code"],
)
def test_metadata_limits(client: openai.OpenAI, example: dict[str, Any]) -> None:
    """Updates are validated with the API's exact error bodies (recorded for create)."""
    made = create(client)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.update(made.id, metadata=example["request"]["metadata"])
    assert caught.value.response.json() == example["body"]
    ok = {f"k{i}": "v" * 512 for i in range(15)} | {"k" * 64: ""}
    assert client.chat.completions.update(made.id, metadata=ok).metadata == ok


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ("limit=0", "limit", "integer_below_min_value"),
        ("limit=101", "limit", "integer_above_max_value"),
        ("limit=ten", "limit", "invalid_type"),
        ("order=up", "order", "invalid_value"),
        ("after=chatcmpl-nope", "after", None),
        (f"metadata[{'k' * 65}]=v", "metadata." + "k" * 65, "property_name_above_max_length"),
    ],
)
def test_bad_list_queries(api: str, query: str, param: str, code: str | None) -> None:
    response = httpx.get(
        f"{api}/v1/chat/completions?{query}", headers={"authorization": f"Bearer {KEYS[0]}"}
    )
    assert response.status_code == (404 if param == "after" else 400)
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_bad_update_bodies(api: str, client: openai.OpenAI) -> None:
    made = create(client)
    url = f"{api}/v1/chat/completions/{made.id}"
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    cases = [
        (b"{}", "metadata", "missing_required_parameter"),
        (b'{"metadata": {}, "model": "x"}', None, None),
        (b"{not json", None, None),
        (b'{"metadata": "x"}', "metadata", "invalid_type"),
        (b'{"metadata": {"a": 1}}', "metadata.a", "invalid_type"),
    ]
    for body, param, code in cases:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, code), body
    cleared = httpx.post(url, json={"metadata": None}, headers=headers).json()
    assert cleared["metadata"] == {}
