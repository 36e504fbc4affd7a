"""Load generator: streaming chat completions, tokens per second and time to first token."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

TIMEOUT = httpx.Timeout(600.0, connect=10.0)


@dataclass
class Result:
    """One streamed request as the client saw it."""

    ttft: float | None  # seconds to the first content token
    wall: float  # seconds to the end of the stream
    tokens: int  # completion tokens (usage when sent, else content chunks)
    chunks: int  # content chunks received
    usage: dict[str, Any] | None = None
    text: str = ""
    error: str | None = None


@dataclass
class Run:
    """Many requests at one concurrency level."""

    concurrency: int
    wall: float
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.error is None]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.ok)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    def ttft(self, q: float) -> float | None:
        values = sorted(r.ttft for r in self.ok if r.ttft is not None)
        return percentile(values, q) if values else None

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def body(
    messages: list[dict[str, str]],
    max_tokens: int = 128,
    ignore_eos: bool = True,
    usage: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A streaming request body; `usage=False` for servers without `stream_options`."""
    b: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        **extra,
    }
    if ignore_eos:
        b["ignore_eos"] = True
    if usage:
        b["stream_options"] = {"include_usage": True}
    return b


async def stream_one(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> Result:
    """POST one streaming request; read SSE lines until [DONE]."""
    t0 = time.perf_counter()
    ttft: float | None = None
    chunks = 0
    usage: dict[str, Any] | None = None
    parts: list[str] = []
    try:
        async with client.stream("POST", url, json=payload) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")[:300]
                return Result(
                    None, time.perf_counter() - t0, 0, 0, error=f"{resp.status_code} {text}"
                )
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = orjson.loads(data)
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        chunks += 1
                        parts.append(content)
    except (httpx.HTTPError, OSError) as exc:
        return Result(ttft, time.perf_counter() - t0, 0, chunks, error=repr(exc))
    tokens = int(usage["completion_tokens"]) if usage and "completion_tokens" in usage else chunks
    return Result(ttft, time.perf_counter() - t0, tokens, chunks, usage, "".join(parts))


async def closed_loop(
    base: str,
    payloads: list[dict[str, Any]],
    concurrency: int,
) -> Run:
    """Send every payload, `concurrency` in flight at a time; wall time covers them all."""
    url = f"{base}/v1/chat/completions"
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    results: list[Result] = []

    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:

        async def worker() -> None:
            while True:
                try:
                    p = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await stream_one(client, url, p))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return Run(concurrency, wall, results)


async def single(base: str, payload: dict[str, Any]) -> Result:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await stream_one(client, f"{base}/v1/chat/completions", payload)


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2)
