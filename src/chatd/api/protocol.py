"""uvicorn's httptools protocol with bounds on what uvicorn leaves open.

uvicorn puts no limit on the size of a request head with httptools, and no limit on the
time a head takes to arrive (a slowloris client holds a connection forever). This protocol
answers a head over `max_head_bytes` with 431 and one slower than `read_timeout` with 408,
closes a connection that sends nothing for `read_timeout`, and, after an early answer (a
413 while the body still comes), discards the rest of the body for at most `read_timeout`.
"""

from __future__ import annotations

import asyncio
import http

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def error_response(status: int, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 response with an OpenAI error body, closing the connection."""
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a size and a time limit on each request head."""

    max_head_bytes = 64 * 1024
    read_timeout = 30.0

    _timer: asyncio.TimerHandle | None = None
    _head_bytes: int | None = 0  # bytes seen of the head being read; None between heads
    _head_parsed = 0  # bytes of the request line and headers httptools has handed over
    _head_rejected = False

    @classmethod
    def configured(cls, max_head_bytes: int, read_timeout: float) -> type[HttpToolsProtocol]:
        """A subclass with these limits, for `uvicorn.Config(http=...)`."""
        attrs = {"max_head_bytes": max_head_bytes, "read_timeout": read_timeout}
        return type(cls.__name__, (cls,), attrs)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            message = f"The request headers did not arrive within {self.read_timeout:g} seconds."
            self.transport.write(error_response(408, message, "request_timeout"))
        self.transport.close()

    def _reject_head(self) -> None:
        message = f"Request headers too large: the limit is {self.max_head_bytes} bytes."
        self.transport.write(error_response(431, message, "request_headers_too_large"))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # an unfinished head over the limit may sit in httptools, not yet handed over
        unfinished = self._head_bytes is not None and self._head_bytes > self.max_head_bytes
        if (self._head_rejected or unfinished) and not self.transport.is_closing():
            self._reject_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_parsed = 0
        self._arm()

    def _over(self, n: int) -> bool:
        """Count n bytes of the head; True once it is over the limit (it is then dropped)."""
        self._head_parsed += n
        self._head_rejected = self._head_rejected or self._head_parsed > self.max_head_bytes
        return self._head_rejected

    def on_url(self, url: bytes) -> None:
        if not self._over(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._over(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm()
        if not self._head_rejected:  # else no app runs; data_received answers 431
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._head_rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        self._disarm()
        if not self._head_rejected:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            self._arm()  # answered before the body ended: discard the rest, for a while
