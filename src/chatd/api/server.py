"""Serving the app with uvicorn: bounded request heads, and SIGTERM drains before exiting."""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from chatd.api.drain import Drain
from chatd.api.protocol import BoundedHttpToolsProtocol
from chatd.config import Settings

KIB = 1024


class DrainingServer(uvicorn.Server):
    """A first SIGTERM or SIGINT drains (chatd.api.drain), then exits 0; a second one exits now.

    uvicorn would stop listening at once (new clients see a refused connection, not a 503)
    and re-raise the signal after shutting down (exit status 143, not 0).
    """

    def __init__(self, config: uvicorn.Config, drain: Drain, drain_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_s = drain_s
        self._draining: asyncio.Task[None] | None = None

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


def serve(app: Starlette, settings: Settings) -> None:
    """Serve `app` until a signal, as `settings` say."""
    protocol = BoundedHttpToolsProtocol.configured(
        max_head_bytes=settings.max_header_kb * KIB, read_timeout=settings.read_timeout_s
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        http=protocol,
        # after the drain, what is left of each connection gets this long
        timeout_graceful_shutdown=5,
    )
    DrainingServer(config, app.state.drain, settings.drain_s).run()
