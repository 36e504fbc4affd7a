"""Sizes and times are bounded before work is done: bodies, heads, JSON shape, messages, prompts.

Against a live server with small limits (1 MiB bodies, 8 KiB heads, 4 s to read), over raw
sockets where a client library would hide what the server does.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL, Server
from tests.schema import validate
from tests.test_engine_features import metric

READ_TIMEOUT_S = 4
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        Path(tmp_path_factory.mktemp("small")),
        "--model-name",
        MODEL,
        "--parallel",
        "1",
        "--max-body-mb",
        "1",
        "--max-header-kb",
        "8",
        "--read-timeout-s",
        str(READ_TIMEOUT_S),
    )
    server.start()
    yield server
    server.stop()


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    return body["error"]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, **extra}


def post(server: Server, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", timeout=120, **kwargs)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(READ_TIMEOUT_S * 5)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(status_line.split()[1]), headers, body


def error_body(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body)
    validate("ErrorResponse", parsed)
    return parsed["error"]


def post_head(length: int | None = None, extra: str = "") -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: chatd\r\n"
        f"content-type: application/json\r\n{framing}\r\n{extra}\r\n"
    ).encode()


def test_declared_body_over_the_limit_is_refused_unread(small: Server) -> None:
    with connect(small) as sock:
        sock.sendall(post_head(length=100 * 1024 * 1024))  # and not a byte of it
        status, headers, body = read_response(sock)
    assert status == 413
    assert headers["content-type"] == "application/json"
    error = error_body(body)
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"
    assert "1 MiB" in error["message"]


def test_streamed_body_is_counted_while_read(small: Server) -> None:
    """A chunked body has no declared length: it is answered once it passes the limit."""
    with connect(small) as sock:
        sock.sendall(post_head())
        chunk = b"x" * 65536
        stop = threading.Event()

        def send() -> None:
            try:
                while not stop.is_set():
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        try:
            status, _, body = read_response(sock)
        finally:
            stop.set()
            sock.shutdown(socket.SHUT_RDWR)
            sender.join()
    assert status == 413
    assert error_body(body)["code"] == "request_too_large"
    assert post(small, json=chat_body()).status_code == 200


def test_the_sdk_sees_413_and_the_connection_survives(small: Server) -> None:
    """The rest of the body is read and discarded, so the client reads the answer."""
    client = small.client()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a" * 2_000_000}]
        )
    assert caught.value.status_code == 413
    validate("ErrorResponse", caught.value.response.json())
    with httpx.Client(base_url=small.url, timeout=120) as http:
        response = http.post("/v1/chat/completions", content=b"x" * 2_000_000)
        error_of(response, 413)
        assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_head_over_the_limit_gets_431(small: Server) -> None:
    with connect(small) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: chatd\r\nx-big: " + b"a" * 16384 + b"\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 431
        assert headers["connection"] == "close"
        assert error_body(body)["code"] == "request_headers_too_large"
        assert sock.recv(1) == b""
    with connect(small) as sock:  # an unfinished header line, which the parser holds back
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: chatd\r\nx-big: " + b"a" * 9000)
        status, _, body = read_response(sock)
        assert status == 431
        assert error_body(body)["code"] == "request_headers_too_large"
    assert httpx.get(small.url + "/health").status_code == 200


def answered(sock: socket.socket, wait: float = 0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def drip(sock: socket.socket, pieces: Iterator[bytes], every: float = 0.2) -> None:
    """Send a piece every `every` seconds until the server answers (or the pieces end)."""
    for piece in pieces:
        if answered(sock, every):
            return
        sock.sendall(piece)


def test_slowloris_head_gets_408_and_others_are_served(small: Server) -> None:
    with connect(small) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: chatd\r\n")
        assert httpx.get(small.url + "/v1/models").status_code == 200
        assert not answered(slow)
        drip(slow, (b"x-more: %d\r\n" % i for i in range(READ_TIMEOUT_S * 20)))
        status, headers, body = read_response(slow)
    assert status == 408
    assert headers["connection"] == "close"
    assert error_body(body)["code"] == "request_timeout"


def test_silent_connection_is_closed(small: Server) -> None:
    with connect(small) as sock:
        assert sock.recv(1) == b""


def test_trickling_body_gets_408_without_an_engine_slot(small: Server) -> None:
    """--parallel 1: a client dripping its body must not keep anyone else from the engine."""
    body = json.dumps(chat_body()).encode()
    with connect(small) as slow:
        slow.sendall(post_head(length=len(body)) + body[:10])
        assert metric(small.url, "running_sequences") == 0
        assert metric(small.url, "waiting_requests") == 0
        # the one slot is free for others meanwhile
        assert post(small, json=chat_body()).status_code == 200
        drip(slow, (bytes([byte]) for byte in body[10:]))
        status, _, answer = read_response(slow)
    assert status == 408
    assert error_body(answer)["code"] == "request_timeout"


def test_too_many_messages(small: Server) -> None:
    messages = [{"role": "user", "content": "Hi"}] * 2049
    response = post(small, json=chat_body(messages=messages))
    error = error_of(response, 400)
    assert error["param"] == "messages"
    assert error["code"] == "array_above_max_length"
    assert "maximum length 2048" in error["message"]


def test_deep_json_is_refused_before_it_is_parsed(small: Server) -> None:
    nested: Any = {"type": "string"}
    for _ in range(40):
        nested = {"type": "object", "properties": {"a": nested}}
    tool = {"type": "function", "function": {"name": "f", "parameters": nested}}
    response = post(small, json=chat_body(tools=[tool]))
    error = error_of(response, 400)
    assert error["code"] == "json_too_deep"
    assert "64" in error["message"]
    deep = b'{"model": "%s", "messages": %s%s}' % (MODEL.encode(), b"[" * 200_000, b"]" * 200_000)
    response = post(small, content=deep)
    assert error_of(response, 400)["code"] == "json_too_deep"
    # brackets, quotes and backslashes inside strings are text, not structure
    text = "[" * 300 + '\\"{' * 300 + "\\" * 301 + '"]}' * 300
    response = post(small, json=chat_body(messages=[{"role": "user", "content": text}]))
    assert response.status_code == 200, response.text


def test_message_content_over_the_limit(http: httpx.Client) -> None:
    """The default server (64 MiB bodies): one message of 11 MB is refused by its length."""
    messages = [{"role": "user", "content": "a" * 11_000_000}]
    error = error_of(http.post("/v1/chat/completions", json=chat_body(messages=messages)), 400)
    assert error["param"] == "messages[0].content"
    assert error["code"] == "string_above_max_length"
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "a" * 11_000_000}]
    messages = [{"role": "user", "content": parts}]
    error = error_of(http.post("/v1/chat/completions", json=chat_body(messages=messages)), 400)
    assert error["param"] == "messages[0].content[1].text"


def test_too_many_json_values(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=chat_body(stop=[0] * 1_100_000))
    assert error_of(response, 400)["code"] == "json_too_many_values"


def test_prompt_far_beyond_the_context_is_refused_untokenized(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    messages = [{"role": "user", "content": "a" * 5_000_000}]
    error = error_of(http.post("/v1/chat/completions", json=chat_body(messages=messages)), 400)
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    assert "at least" in error["message"]
    # one that passes the bound but does not fit still gets the exact count
    messages = [{"role": "user", "content": "a " * 20_000}]
    error = error_of(http.post("/v1/chat/completions", json=chat_body(messages=messages)), 400)
    assert error["code"] == "context_length_exceeded"
    assert "at least" not in error["message"]
    counted = re.search(r"\((\d+) in the messages", error["message"])
    assert counted and 20_000 < int(counted.group(1)) < 21_000
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert reply.choices[0].message.content
