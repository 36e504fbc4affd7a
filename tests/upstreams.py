"""Small real upstreams for the gateway's failure tests: HTTP servers on loopback.

`ScriptedUpstream` is a real HTTP/1.1 server (the standard library's) whose answers
are chosen by the first path segment: `/ok/v1`, `/busy/v1` (429 + Retry-After),
`/busy-once/v1` (429 once per test, then ok), `/broken/v1` (500 while `broken` is set),
`/partial/v1` (a stream cut off mid-answer); it counts the requests of each mode.
`hanging_socket` accepts connections (the kernel does) and never answers.
`chatd_upstream` starts another chatd, with the default model, as an OpenAI-kind upstream.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import Server

UP_KEY = "sk-upstream-secret"

COMPLETION = {
    "id": "chatcmpl-scripted",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "scripted-1",
    "system_fingerprint": "fp_scripted",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
VENDOR_HEADERS = {
    "x-request-id": "req_scripted",
    "openai-processing-ms": "12",
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-requests": "99",
}


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "scripted-1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class ScriptedUpstream:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict[str, object]] = []
        self.broken = True
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "scripted-1"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                upstream.bodies.append(body)
                mode = self.path.strip("/").split("/")[0]
                upstream.hits[mode] += 1
                if mode == "busy" or (mode == "busy-once" and upstream.hits[mode] == 1):
                    error = {"message": "Slow down.", "type": "requests", "code": "rate_limit"}
                    self._send(429, {"error": error}, {"retry-after": "1", "retry-after-ms": "50"})
                elif mode == "broken" and upstream.broken:
                    self._send(500, {"error": {"message": "Internal trouble.", "type": "x"}})
                elif mode == "html":
                    self._send(503, b"<html>Service Unavailable</html>")
                elif mode == "partial":
                    self._stream_partial()
                else:
                    self._send(200, COMPLETION, VENDOR_HEADERS)

            def _send(
                self, status: int, body: object, headers: dict[str, str] | None = None
            ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream_partial(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(chunk({"role": "assistant", "content": ""}))
                self.wfile.write(chunk({"content": "Hello"}))
                self.wfile.flush()
                self.close_connection = True  # the vendor's process died here

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def hanging_socket() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel's backlog) and never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def chatd_upstream(data_dir: Path, parallel: int) -> Server:
    """A started chatd serving the default model as `smollm2`, behind the key UP_KEY."""
    args = ("--model-name", "smollm2", "--parallel", str(parallel), "--api-key", UP_KEY)
    return Server(data_dir, *args).start()


def upstream_table(name: str, base_url: str, **options: object) -> str:
    """One OpenAI-kind `[[upstreams]]` table of a gateway's config (model `m` unless given)."""
    lines = [
        "[[upstreams]]",
        f'name = "{name}"',
        'kind = "openai"',
        f'base_url = "{base_url}"',
        'models = ["m"]' if "models" not in options else "",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n\n"
