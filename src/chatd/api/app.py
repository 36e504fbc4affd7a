"""The ASGI application: routes, middleware, exception handlers, lifespan."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.api import chat, metrics, models, openapi, stored, web
from chatd.api.auth import AuthMiddleware
from chatd.api.drain import Drain, DrainMiddleware
from chatd.api.errors import (
    APIError,
    UnexpectedErrorMiddleware,
    handle_api_error,
    handle_backend_error,
    handle_http_exception,
)
from chatd.api.limits import MIB, BodyLimitMiddleware
from chatd.api.ratelimit import LimitsMiddleware
from chatd.api.responses import json_response
from chatd.backend import Backend, BackendError
from chatd.config import Settings
from chatd.keys import load_keyring
from chatd.ratelimits import create_limiter
from chatd.router import Router
from chatd.store import create_store


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


BackendFactory = Callable[[Settings], list[Backend] | Awaitable[list[Backend]]]


def create_app(settings: Settings, backends: BackendFactory) -> Starlette:
    """The app for `settings`, serving the backends that `backends(settings)` builds at start."""
    keyring = load_keyring(settings)
    limiter = create_limiter(settings.redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        built = backends(settings)
        app.state.router = Router(await built if inspect.isawaitable(built) else built)
        app.state.started = int(time.time())
        app.state.store = create_store(settings)
        await app.state.store.start()
        await limiter.start()
        try:
            yield
        finally:
            await limiter.close()
            await app.state.store.close()
            await app.state.router.close()

    drain = Drain()
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            *chat.routes,
            *stored.routes,
            *models.routes,
            *metrics.routes,
            *openapi.routes,
            *web.routes,
        ],
        middleware=[
            Middleware(UnexpectedErrorMiddleware),
            Middleware(DrainMiddleware, drain=drain),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_mb * MIB,
                timeout=settings.read_timeout_s,
            ),
            Middleware(AuthMiddleware, keyring=keyring),
            Middleware(LimitsMiddleware, limiter=limiter),
        ],
        exception_handlers={
            APIError: handle_api_error,
            BackendError: handle_backend_error,
            HTTPException: handle_http_exception,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.drain = drain
    app.state.limiter = limiter
    return app
