"""A cheap load generator: N keep-alive raw-socket connections, each one request in flight.

Runs on uvloop in the benchmark's own process (the servers are other processes); parses
just enough HTTP/1.1 (content-length or chunked) to time the first body byte and the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    """Where to send: port, path, model and extra headers of one server and mode."""

    name: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> bytes:
        head = f"POST {self.path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
        for key, value in self.headers.items():
            head += f"\r\n{key}: {value}"
        head += f"\r\ncontent-length: {len(self.body)}\r\n\r\n"
        return head.encode() + self.body


@dataclass
class Sample:
    """What one load segment measured."""

    latencies: list[float] = field(default_factory=list)  # seconds, requests begun in window
    ttfb: list[float] = field(default_factory=list)  # seconds to the first body byte
    overhead_ms: list[float] = field(default_factory=list)  # chatd's x-chatd-overhead-ms
    done: int = 0  # requests that ended inside the window
    window_s: float = 0.0
    errors: int = 0


class ConnectionClosed(Exception):
    pass


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[float, float, bool, dict[bytes, bytes]]:
    """Send one request; returns (seconds to first body byte, total seconds, ok, headers)."""
    t0 = time.perf_counter()
    writer.write(raw)
    status = await reader.readline()
    if not status:
        raise ConnectionClosed
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        await reader.readexactly(1)
        first = time.perf_counter() - t0
        await reader.readexactly(length - 1)
    else:
        first = 0.0
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if not first:
                first = time.perf_counter() - t0
            if size == 0:
                break
    ok = status.split(b" ", 2)[1] == b"200"
    if headers.get(b"connection", b"").lower() == b"close":
        raise ConnectionClosed
    return first, time.perf_counter() - t0, ok, headers


async def _conn(target: Target, record_from: float, stop_at: float, out: Sample) -> None:
    raw = target.request()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port, limit=1 << 20)
    try:
        while (t0 := time.perf_counter()) < stop_at:
            try:
                first, total, ok, headers = await _one(reader, writer, raw)
            except (ConnectionClosed, ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", target.port, limit=1 << 20
                )
                continue
            end = t0 + total
            if not ok:
                out.errors += 1
                continue
            if record_from <= end <= stop_at:
                out.done += 1
            if t0 >= record_from:
                out.latencies.append(total)
                out.ttfb.append(first)
                if b"x-chatd-overhead-ms" in headers:
                    out.overhead_ms.append(float(headers[b"x-chatd-overhead-ms"]))
    finally:
        writer.close()


async def load(target: Target, in_flight: int, seconds: float, warmup: float) -> Sample:
    """`in_flight` connections, each sending requests back to back for warmup + seconds."""
    now = time.perf_counter()
    out = Sample(window_s=seconds)
    record_from, stop_at = now + warmup, now + warmup + seconds
    await asyncio.gather(*(_conn(target, record_from, stop_at, out) for _ in range(in_flight)))
    return out


async def check(target: Target, expect: bytes) -> None:
    """One request must answer 200 with `expect` in its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port, limit=1 << 20)
    writer.write(target.request())
    data = b""
    while expect not in data and b"[DONE]" not in data:
        chunk = await asyncio.wait_for(reader.read(65536), 30)
        if not chunk:
            break
        data += chunk
    writer.close()
    if not data.startswith(b"HTTP/1.1 200") or expect not in data:
        raise RuntimeError(f"{target.name}: unexpected answer {data[:400]!r}")
