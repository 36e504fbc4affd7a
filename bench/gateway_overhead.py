"""Latency a pure-gateway chatd adds in front of a fast loopback upstream, at 1 in flight.

`python -m bench.gateway_overhead [N]`: a raw asyncio mock (bench/upstream_clients.py's,
a fixed `chat.completion` body or a fixed SSE stream) in one process, `chatd serve
--no-local-model` in front of it, and a keep-alive raw-socket client that sends N
sequential requests to each, alternating; prints p50/p99 of direct and via chatd, their
difference, and the mean of chatd's own `x-chatd-overhead-ms`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.upstream_clients import BODY, REQUEST


def sse_chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> bytes:
    choices = (
        [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body |= {"choices": choices} | ({"usage": usage} if usage else {})
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
SSE = b"".join(
    [
        sse_chunk({"role": "assistant", "content": ""}),
        sse_chunk({"content": "Hi"}),
        sse_chunk({"content": " there"}),
        sse_chunk({}, "stop"),
        sse_chunk({}, usage=USAGE),
        b"data: [DONE]\n\n",
    ]
)


def plain(body: bytes, content_type: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type
    return head + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if head.startswith(b"GET"):
                writer.write(plain(b'{"object":"list","data":[{"id":"m"}]}', b"application/json"))
            elif b'"stream":true' in body:
                writer.write(plain(SSE, b"text/event-stream"))
            else:
                writer.write(plain(BODY, b"application/json"))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def mock(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Conn:
    """One keep-alive HTTP/1.1 connection; returns (seconds to first byte, total, headers)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def send(self, body: bytes) -> tuple[float, float, dict[str, str]]:
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        t0 = time.perf_counter()
        self.sock.sendall(request)
        status = self.file.readline()
        first = time.perf_counter() - t0
        assert b" 200 " in status, status
        headers = {}
        while (line := self.file.readline()) != b"\r\n":
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        if "content-length" in headers:
            self.file.read(int(headers["content-length"]))
        else:  # chunked: read to the last chunk
            while True:
                size = int(self.file.readline(), 16)
                self.file.read(size + 2)
                if size == 0:
                    break
        return first, time.perf_counter() - t0, headers


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    mock_port, chatd_port = free_port(), free_port()
    multiprocessing.Process(target=mock, args=(mock_port,), daemon=True).start()
    data = Path(tempfile.mkdtemp())
    (data / "chatd.toml").write_text(
        f'[[upstreams]]\nname = "mock"\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:{mock_port}/v1"\nmodels = ["m"]\n'
    )
    cmd = [sys.executable, "-m", "chatd.cli", "serve", "--no-local-model", "--port"]
    cmd += [str(chatd_port), "--config", str(data / "chatd.toml"), "--data-dir", str(data)]
    cmd += ["--log-level", "warning"]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, env=os.environ)
    try:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{chatd_port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        print(f"pure gateway up in {time.monotonic() - began:.2f} s")
        rss = Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]
        print(f"pure gateway RSS at start: {int(rss) / 1024:.0f} MB")
        for stream in (False, True):
            body = orjson.loads(REQUEST) | {"stream": stream}
            direct_body = orjson.dumps(body)
            via_body = orjson.dumps(body | {"model": "mock/m"})
            direct, via = Conn(mock_port), Conn(chatd_port)
            times: dict[str, list[float]] = {"direct": [], "chatd": [], "overhead": []}
            firsts: dict[str, list[float]] = {"direct": [], "chatd": []}
            for i in range(n + 200):
                d = direct.send(direct_body)
                v = via.send(via_body)
                if i >= 200:
                    times["direct"].append(d[1])
                    times["chatd"].append(v[1])
                    firsts["direct"].append(d[0])
                    firsts["chatd"].append(v[0])
                    times["overhead"].append(float(v[2]["x-chatd-overhead-ms"]) / 1000)
            label = "stream" if stream else "plain"
            p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
            p99 = {k: sorted(v)[int(len(v) * 0.99)] * 1000 for k, v in times.items()}
            ttfb = {k: statistics.median(v) * 1000 for k, v in firsts.items()}
            print(
                f"{label}: direct p50 {p50['direct']:.3f} ms p99 {p99['direct']:.3f}; "
                f"chatd p50 {p50['chatd']:.3f} ms p99 {p99['chatd']:.3f}; "
                f"added p50 {p50['chatd'] - p50['direct']:.3f} ms "
                f"p99 {p99['chatd'] - p99['direct']:.3f} ms; "
                f"added ttfb p50 {ttfb['chatd'] - ttfb['direct']:.3f} ms; "
                f"x-chatd-overhead-ms p50 {p50['overhead']:.3f}"
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
