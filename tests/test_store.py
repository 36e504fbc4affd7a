"""The store against real databases: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from chatd.store import InvalidCursor, NotFound, Page, SQLStore, schema
from tests.store_support import BACKENDS, database_url, drop_database, fresh_database  # noqa: F401


class SyncStore:
    """A started SQLStore whose coroutine methods run on one event loop."""

    def __init__(self, url: str, runner: asyncio.Runner) -> None:
        self.store = SQLStore(url)
        self.runner = runner
        runner.run(self.store.start())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        return lambda *args, **kwargs: self.runner.run(method(*args, **kwargs))


@pytest.fixture(scope="session")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="session")
def db(database_url: str, runner: asyncio.Runner) -> Iterator[SyncStore]:  # noqa: F811
    store = SyncStore(database_url, runner)
    yield store
    runner.run(store.store.close())


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}"


def request_body(model: str = "m", metadata: dict[str, str] | None = None, n: int = 2) -> dict:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "be brief"}]
    messages += [{"role": "user", "content": f"question {i}"} for i in range(n - 1)]
    body: dict[str, Any] = {"model": model, "messages": messages, "store": True}
    if metadata is not None:
        body["metadata"] = metadata
    return body


def completion(cid: str, created: int = 1_700_000_000, model: str = "m") -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer {cid}", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "system_fingerprint": "fp_test",
    }


def save(db: SyncStore, owner: str, cid: str, created: int = 1_700_000_000, **kw: Any) -> str:
    db.save(owner=owner, request=request_body(**kw), completion=completion(cid, created))
    return cid


def ids(page: Page) -> list[str]:
    return [item["id"] for item in page.data]


def walk(db: SyncStore, owner: str, limit: int, **kw: Any) -> list[str]:
    """Every id of a list, page by page as the SDK walks it."""
    seen: list[str] = []
    after = None
    while True:
        page = db.list(owner, after=after, limit=limit, **kw)
        body = page.body()
        assert body["first_id"] == (page.data[0]["id"] if page.data else None)
        seen += ids(page)
        if not page.has_more:
            return seen
        after = body["last_id"]


def test_save_and_get(db: SyncStore, owner: str) -> None:
    body = request_body(metadata={"user": "ann"})
    body |= {"temperature": 0.2, "seed": 7, "user": "u-1"}
    db.save(owner=owner, request=body, completion=completion("chatcmpl-get-" + owner))
    stored = db.get(owner, "chatcmpl-get-" + owner)
    assert stored["choices"][0]["message"]["content"] == f"answer chatcmpl-get-{owner}"
    assert stored["metadata"] == {"user": "ann"}
    assert stored["object"] == "chat.completion"
    assert stored["usage"]["total_tokens"] == 5
    assert (stored["temperature"], stored["seed"], stored["input_user"]) == (0.2, 7, "u-1")
    assert stored["top_p"] == 1.0 and stored["tools"] is None


def test_list_orders_and_pages(db: SyncStore, owner: str) -> None:
    created = [100, 100, 101, 99, 101, 102, 100]
    for i, t in enumerate(created):
        save(db, owner, f"{owner}-{i}", created=t)
    expected = [f"{owner}-{i}" for i in sorted(range(len(created)), key=lambda i: created[i])]
    assert walk(db, owner, 3) == expected
    assert walk(db, owner, 2, order="desc") == expected[::-1]
    assert walk(db, owner, 100) == expected
    first = db.list(owner, limit=7)
    assert first.has_more is False and ids(first) == expected
    assert db.list(owner, limit=6).has_more is True


def test_list_filters(db: SyncStore, owner: str) -> None:
    specs = [
        ("a", {"env": "prod", "team": "x"}),
        ("b", {"env": "prod"}),
        ("a", {"env": "dev", "team": "x"}),
        ("a", {"env": "prod", "team": "x"}),
        ("b", None),
    ]
    for i, (model, meta) in enumerate(specs):
        save(db, owner, f"{owner}-{i}", created=200 + i, model=model, metadata=meta)
    names = lambda found: [int(cid.rsplit("-", 1)[1]) for cid in found]  # noqa: E731
    assert names(walk(db, owner, 1, model="a")) == [0, 2, 3]
    assert names(walk(db, owner, 1, metadata={"env": "prod"})) == [0, 1, 3]
    assert names(walk(db, owner, 1, metadata={"env": "prod"}, order="desc")) == [3, 1, 0]
    assert names(walk(db, owner, 2, metadata={"env": "prod", "team": "x"})) == [0, 3]
    assert names(walk(db, owner, 2, metadata={"env": "prod"}, model="b")) == [1]
    assert walk(db, owner, 2, metadata={"env": "nope"}) == []
    assert walk(db, owner, 2, model="c") == []


def test_update_replaces_metadata(db: SyncStore, owner: str) -> None:
    cid = save(db, owner, f"{owner}-u", metadata={"old": "1", "keep": "k"})
    updated = db.update(owner, cid, {"new": "2"})
    assert updated["metadata"] == {"new": "2"} and updated["id"] == cid
    assert db.get(owner, cid)["metadata"] == {"new": "2"}
    assert ids(db.list(owner, metadata={"old": "1"})) == []
    assert ids(db.list(owner, metadata={"new": "2"})) == [cid]
    assert db.update(owner, cid, {})["metadata"] == {}
    assert ids(db.list(owner, metadata={"new": "2"})) == []


def test_concurrent_updates(db: SyncStore, owner: str) -> None:
    cid = save(db, owner, f"{owner}-cu")

    async def race() -> None:
        await asyncio.gather(*(db.store.update(owner, cid, {"n": str(i)}) for i in range(8)))

    db.runner.run(race())
    final = db.get(owner, cid)["metadata"]
    assert ids(db.list(owner, metadata=final)) == [cid]


def test_delete(db: SyncStore, owner: str) -> None:
    first, gone, last = (save(db, owner, f"{owner}-{i}", created=300 + i) for i in range(3))
    db.delete(owner, gone)
    for call in (
        lambda: db.get(owner, gone),
        lambda: db.delete(owner, gone),
        lambda: db.update(owner, gone, {"a": "b"}),
        lambda: db.messages(owner, gone),
    ):
        with pytest.raises(NotFound):
            call()
    assert ids(db.list(owner)) == [first, last]
    assert ids(db.list(owner, after=gone)) == [last]


def test_messages(db: SyncStore, owner: str) -> None:
    cid = save(db, owner, f"{owner}-msg", n=5)
    page = db.messages(owner, cid, limit=2)
    assert ids(page) == [f"{cid}-0", f"{cid}-1"] and page.has_more
    assert page.data[0]["role"] == "system" and page.data[0]["content"] == "be brief"
    assert page.data[1]["content_parts"] is None and page.data[1]["name"] is None
    rest = db.messages(owner, cid, after=f"{cid}-1", limit=10)
    assert ids(rest) == [f"{cid}-2", f"{cid}-3", f"{cid}-4"] and not rest.has_more
    back = db.messages(owner, cid, order="desc", after=f"{cid}-3", limit=2)
    assert ids(back) == [f"{cid}-2", f"{cid}-1"] and back.has_more
    with pytest.raises(InvalidCursor):
        db.messages(owner, cid, after="chatcmpl-other-1")


def test_content_parts(db: SyncStore, owner: str) -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts, "name": "ann"}]}
    db.save(owner=owner, request=body, completion=completion(f"{owner}-parts"))
    (item,) = db.messages(owner, f"{owner}-parts").data
    assert item == {
        "id": f"{owner}-parts-0",
        "role": "user",
        "content": "look",
        "content_parts": parts,
        "name": "ann",
        "refusal": None,
    }


def test_owners_are_isolated(db: SyncStore, owner: str) -> None:
    cid = save(db, owner, f"{owner}-mine", metadata={"k": "v"})
    other = owner + "-other"
    assert ids(db.list(other)) == [] and ids(db.list(other, metadata={"k": "v"})) == []
    for call in (
        lambda: db.get(other, cid),
        lambda: db.update(other, cid, {}),
        lambda: db.delete(other, cid),
        lambda: db.messages(other, cid),
        lambda: db.list(other, after=cid),
    ):
        with pytest.raises(NotFound):
            call()
    assert db.get(owner, cid)["metadata"] == {"k": "v"}


def test_unknown_after(db: SyncStore, owner: str) -> None:
    with pytest.raises(NotFound) as caught:
        db.list(owner, after="chatcmpl-missing")
    assert caught.value.param == "after"


def test_two_instances_share_rows(db: SyncStore, database_url: str, owner: str) -> None:  # noqa: F811
    second = SyncStore(database_url, db.runner)
    try:
        cid = save(second, owner, f"{owner}-shared", metadata={"from": "second"})
        assert db.get(owner, cid)["metadata"] == {"from": "second"}
        db.update(owner, cid, {"from": "first"})
        assert ids(second.list(owner, metadata={"from": "first"})) == [cid]
    finally:
        db.runner.run(second.store.close())


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_start(backend: str, tmp_path: Path) -> None:
    """Two processes migrating one empty database at once: both start, schema at head."""
    url = fresh_database(backend, tmp_path)

    async def start_two() -> None:
        stores = [SQLStore(url), SQLStore(url)]
        await asyncio.gather(*(store.start() for store in stores))
        await stores[0].save(owner="o", request=request_body(), completion=completion("c1"))
        assert (await stores[1].get("o", "c1"))["id"] == "c1"
        for store in stores:
            await store.close()

    try:
        asyncio.run(start_two())
    finally:
        drop_database(url)


def test_migrations_match_schema(db: SyncStore) -> None:
    """The migrated database is what chatd.store.schema describes: nothing to autogenerate."""

    def compare(connection: Any) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection), schema.metadata)

    async def diff() -> list[Any]:
        async with db.store.engine.connect() as conn:
            return await conn.run_sync(compare)

    assert db.runner.run(diff()) == []


def test_relayed_responses_are_their_owners(db: SyncStore, owner: str) -> None:
    """A relayed response's upstream is known to its owner only; deleting forgets it."""
    rid = f"resp_{uuid.uuid4().hex}"
    db.save_relayed(owner=owner, response_id=rid, upstream="up")
    db.save_relayed(owner="someone-else", response_id=rid, upstream="other")  # kept: first
    assert db.relayed_upstream(owner, rid) == "up"
    assert db.relayed_upstream("someone-else", rid) is None
    db.forget_relayed("someone-else", rid)
    assert db.relayed_upstream(owner, rid) == "up"
    db.forget_relayed(owner, rid)
    assert db.relayed_upstream(owner, rid) is None
