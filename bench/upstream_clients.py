"""Which async HTTP client adds the least latency to a relayed request (loopback upstream).

`python -m bench.upstream_clients`: a raw asyncio server answers every request with a
fixed `chat.completion` body (keep-alive), and each client library sends N sequential
POSTs through one pooled client; prints p50/p99 per request in microseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import orjson

BODY = orjson.dumps(
    {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
REQUEST = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
N = 3000


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def timed(send: Callable[[], Awaitable[bytes]]) -> list[float]:
    for _ in range(200):
        await send()
    times = []
    for _ in range(N):
        t0 = time.perf_counter()
        await send()
        times.append(time.perf_counter() - t0)
    return times


async def main() -> None:
    import aiohttp
    import httpcore
    import httpx

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    results: dict[str, list[float]] = {}

    async with httpx.AsyncClient() as hx:

        async def via_httpx() -> bytes:
            return (await hx.post(url, content=REQUEST, headers=headers)).content

        results["httpx"] = await timed(via_httpx)

    async with httpcore.AsyncConnectionPool() as pool:
        hc_headers = list(headers.items())

        async def via_httpcore() -> bytes:
            response = await pool.request("POST", url, headers=hc_headers, content=REQUEST)
            return response.content

        results["httpcore"] = await timed(via_httpcore)

    async with aiohttp.ClientSession() as session:

        async def via_aiohttp() -> bytes:
            async with session.post(url, data=REQUEST, headers=headers) as response:
                return await response.read()

        results["aiohttp"] = await timed(via_aiohttp)

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: "
        f"{len(REQUEST)}\r\ncontent-type: application/json\r\n\r\n"
    ).encode() + REQUEST

    async def via_socket() -> bytes:
        writer.write(raw)
        return await reader.readexactly(len(RESPONSE))

    results["raw socket (floor)"] = await timed(via_socket)
    writer.close()
    server.close()
    for name, times in results.items():
        times.sort()
        p50 = statistics.median(times) * 1e6
        p99 = times[int(len(times) * 0.99)] * 1e6
        print(f"{name:20s} p50 {p50:7.1f} us   p99 {p99:7.1f} us")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
