"""Serving the app with uvicorn: bounded request heads, SIGTERM drains before exiting, a
banner once it listens, and start-up failures as one line without a traceback."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.api.banner import banner_fields, banner_text
from chatd.api.drain import Drain
from chatd.api.protocol import BoundedHttpToolsProtocol
from chatd.config import Settings
from chatd.logs import log_config
from chatd.preflight import StartupError

KIB = 1024


class DrainingServer(uvicorn.Server):
    """A first SIGTERM or SIGINT drains (chatd.api.drain), then exits 0; a second one exits now.

    uvicorn would stop listening at once (new clients see a refused connection, not a 503)
    and re-raise the signal after shutting down (exit status 143, not 0).
    """

    def __init__(
        self, config: uvicorn.Config, drain: Drain, drain_s: float, on_ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_s = drain_s
        self.on_ready = on_ready
        self._draining: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            try:
                self.on_ready()
            except Exception:  # a banner that fails must not stop a server that works
                logging.getLogger("chatd").exception("the start-up banner failed")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self.should_exit:
            self.should_exit = True
            return
        # signal.signal runs handlers on the main thread, which runs the loop, between
        # two steps of it: schedule the drain rather than start it here
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        await self.drain.run(self.drain_s)
        self.should_exit = True


class StartupErrors:
    """Lifespan failures that are a StartupError reach uvicorn without their traceback.

    Starlette sends `lifespan.startup.failed` from inside its `except` block, so the
    exception is the one being handled while the message is sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.error: StartupError | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                exc = sys.exc_info()[1]
                if isinstance(exc, StartupError):
                    self.error = exc
                    message = {"type": message["type"], "message": ""}
            await send(message)

        await self.app(scope, receive, quiet)


class QuietStartup(logging.Filter):
    """Drops uvicorn's start-up lines: the banner (or the one-line error) says it all."""

    LINES = (
        "Started server process [%d]",
        "Waiting for application startup.",
        "Application startup complete.",
        "Application startup failed. Exiting.",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.LINES


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads; StartupError if it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"--host {host}: {exc.strerror}; use an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (another chatd?): stop that "
                "server or pick another with --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"no permission to listen on port {port}: pick one above 1023 with --port"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, settings: Settings) -> None:
    """Serve `app` until a signal, as `settings` say; SystemExit with one line if it cannot."""
    try:
        sock = bind(settings.host, settings.port)
    except StartupError as exc:
        raise SystemExit(f"chatd: {exc}") from None
    port = sock.getsockname()[1]
    logs = log_config(settings.log_format, settings.log_level)
    protocol = BoundedHttpToolsProtocol.configured(
        max_head_bytes=settings.max_header_kb * KIB, read_timeout=settings.read_timeout_s
    )
    guarded = StartupErrors(app)
    config = uvicorn.Config(
        guarded,
        host=settings.host,
        port=port,
        log_config=logs,
        log_level=settings.log_level,
        access_log=False,
        http=protocol,
        ws="none",  # no websocket routes: not importing a websockets library saves ~4 MB
        # after the drain, what is left of each connection gets this long
        timeout_graceful_shutdown=5,
    )
    logging.getLogger("uvicorn.error").addFilter(QuietStartup())

    def ready() -> None:
        fields = {**banner_fields(app, settings, port), "pid": os.getpid()}
        if settings.log_format == "json":
            extra = {key.replace(" ", "_"): value for key, value in fields.items()}
            log_ready.info("chatd is ready", extra={"ready": {"event": "ready", **extra}})
        else:
            log_ready.info("%s", banner_text(fields))

    server = DrainingServer(config, app.state.drain, settings.drain_s, ready)
    try:
        server.run(sockets=[sock])
    finally:
        # uvicorn exits with status 3 after a failed start-up: say why, in one line
        if guarded.error is not None:
            raise SystemExit(f"chatd: {guarded.error}")


log_ready = logging.getLogger("chatd.ready")
