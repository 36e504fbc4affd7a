"""Stored-completion latency at scale: bulk-insert N completions, then time list and retrieve.

    .venv/bin/python bench/store_bench.py [--rows 100000] [--samples 300] [--backend sqlite]

PostgreSQL comes from CHATD_TEST_PG_URL, else from scripts/postgres.sh; the benchmark uses
a database of its own and drops it (after VACUUM ANALYZE, as autovacuum would have run;
SQLite gets no ANALYZE, as chatd runs none). Prints a markdown table of p50/p95 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert, make_url, text

from chatd.store import SQLStore
from chatd.store.objects import stored_completion
from chatd.store.schema import completions, messages, metadata_pairs

ROOT = Path(__file__).resolve().parent.parent
OWNER = "key_bench"
ENVS = ("prod", "staging", "dev")
USERS = 1000
CHUNK = 2000


def pg_url() -> str:
    url = os.environ.get("CHATD_TEST_PG_URL")
    if not url:
        script = ROOT / "scripts" / "postgres.sh"
        subprocess.run(["bash", str(script)], check=True, capture_output=True)
        url = subprocess.run(
            ["bash", str(script), "url"], check=True, capture_output=True, text=True
        ).stdout.strip()
    return url


async def pg_admin(url: str, sql: str) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fake(i: int, created: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The request, completion and metadata of completion number `i`."""
    cid = f"chatcmpl-{uuid.UUID(int=random.getrandbits(128)).hex}"
    meta = {"user": f"u{i % USERS}", "env": ENVS[i % len(ENVS)]}
    request = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Question number {i}: " + "tell me more. " * 8},
        ],
        "store": True,
        "metadata": meta,
        "temperature": 0.7,
    }
    completion = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": "smollm2",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "An answer. " * 40, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 120, "total_tokens": 160},
        "system_fingerprint": "fp_bench",
    }
    return request, completion, meta


async def bulk_insert(store: SQLStore, rows: int) -> list[str]:
    """Insert `rows` completions in large batches; their ids in order."""
    ids: list[str] = []
    start = int(time.time()) - rows // 10
    for first in range(0, rows, CHUNK):
        batch_c, batch_m, batch_p = [], [], []
        for i in range(first, min(first + CHUNK, rows)):
            seq = i + 1
            created = start + i // 10
            request, completion, meta = fake(i, created)
            body = {k: v for k, v in request.items() if k != "messages"}
            ids.append(completion["id"])
            batch_c.append(
                {
                    "seq": seq,
                    "id": completion["id"],
                    "owner": OWNER,
                    "model": body["model"],
                    "created": created,
                    "metadata": meta,
                    "request": body,
                    "response": stored_completion(completion, body),
                }
            )
            batch_m += [
                {"completion_seq": seq, "position": p, "message": message}
                for p, message in enumerate(request["messages"])
            ]
            batch_p += [
                {"completion_seq": seq, "key": k, "value": v, "owner": OWNER, "created": created}
                for k, v in meta.items()
            ]
        async with store.engine.begin() as conn:
            await conn.execute(insert(completions), batch_c)
            await conn.execute(insert(messages), batch_m)
            await conn.execute(insert(metadata_pairs), batch_p)
    if not store.sqlite:
        async with store.engine.begin() as conn:
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('completions', 'seq'), :n)"),
                {"n": rows},
            )
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    return ids


async def timed(samples: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    for _ in range(min(20, samples)):
        await call()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    quantiles = statistics.quantiles(times, n=100)
    return statistics.median(times), quantiles[94]


async def bench(url: str, rows: int, samples: int) -> tuple[float, dict[str, tuple[float, float]]]:
    store = SQLStore(url)
    await store.start()
    t0 = time.perf_counter()
    ids = await bulk_insert(store, rows)
    inserted = time.perf_counter() - t0
    pick = lambda: random.choice(ids)  # noqa: E731
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "list, first page": lambda: store.list(OWNER),
        "list, desc (newest first)": lambda: store.list(OWNER, order="desc"),
        "list, after a random id": lambda: store.list(OWNER, after=pick()),
        "list, model filter": lambda: store.list(OWNER, model="smollm2", order="desc"),
        "list, metadata user=u42 (0.1%)": lambda: store.list(OWNER, metadata={"user": "u42"}),
        "list, metadata env=prod (33%), desc": lambda: store.list(
            OWNER, metadata={"env": "prod"}, order="desc"
        ),
        "list, metadata user+env": lambda: store.list(
            OWNER, metadata={"user": "u42", "env": ENVS[42 % 3]}
        ),
        "retrieve": lambda: store.get(OWNER, pick()),
        "messages": lambda: store.messages(OWNER, pick()),
    }
    results = {}
    for name, call in cases.items():
        page = await call()
        assert getattr(page, "data", [page]), name
        results[name] = await timed(samples, call)
    results["save (one, committed)"] = await timed(max(samples // 5, 20), lambda: save_one(store))
    await store.close()
    return inserted, results


async def save_one(store: SQLStore) -> None:
    request, completion, _ = fake(0, int(time.time()))
    await store.save(owner=OWNER, request=request, completion=completion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    random.seed(7)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    table: dict[str, dict[str, tuple[float, float]]] = {}
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp}/chatd.db"
                loads[backend], table[backend] = asyncio.run(bench(url, args.rows, args.samples))
                continue
            base = pg_url()
            name = f"chatd_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(pg_admin(base, f'CREATE DATABASE "{name}"'))
            url = make_url(base).set(database=name).render_as_string(hide_password=False)
            try:
                loads[backend], table[backend] = asyncio.run(bench(url, args.rows, args.samples))
            finally:
                asyncio.run(pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"\n{args.rows} stored completions, one owner; {args.samples} samples; ms\n")
    header = " | ".join(f"{b} p50 | {b} p95" for b in backends)
    print(f"| operation | {header} |")
    print("|---|" + "---:|" * (2 * len(backends)))
    for name in table[backends[0]]:
        cells = " | ".join(f"{table[b][name][0]:.2f} | {table[b][name][1]:.2f}" for b in backends)
        print(f"| {name} | {cells} |")
    inserts = ", ".join(f"{b} {loads[b]:.1f} s" for b in backends)
    print(f"\nbulk insert of {args.rows}: {inserts}", file=sys.stderr)


if __name__ == "__main__":
    main()
