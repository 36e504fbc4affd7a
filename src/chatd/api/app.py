"""The ASGI application: routes, middleware, exception handlers, lifespan."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.api import chat, metrics, models, stored, web
from chatd.api.auth import AuthMiddleware
from chatd.api.errors import (
    APIError,
    handle_api_error,
    handle_backend_error,
    handle_http_exception,
    handle_unexpected,
)
from chatd.api.responses import json_response
from chatd.backend import Backend, BackendError
from chatd.config import Settings
from chatd.router import Router
from chatd.store import create_store


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def local_backend(settings: Settings) -> Backend:
    from chatd.engine.local import LocalBackend

    return LocalBackend(
        settings.model,
        model_names=settings.model_names or None,
        n_ctx=settings.ctx,
        n_threads=settings.threads,
        parallel=settings.parallel,
        queue_size=settings.queue_size,
        prefix_cache=settings.prefix_cache,
        flash_attn=settings.flash_attn,
        kv_type=settings.kv_type,
    )


def create_app(settings: Settings, backends: list[Backend] | None = None) -> Starlette:
    """The app for `settings`; `backends` defaults to the local llama.cpp engine."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.router = Router(backends if backends is not None else [local_backend(settings)])
        app.state.started = int(time.time())
        app.state.store = create_store(settings)
        await app.state.store.start()
        try:
            yield
        finally:
            await app.state.store.close()
            await app.state.router.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            *chat.routes,
            *stored.routes,
            *models.routes,
            *metrics.routes,
            *web.routes,
        ],
        middleware=[Middleware(AuthMiddleware, api_keys=settings.api_keys)],
        exception_handlers={
            APIError: handle_api_error,
            BackendError: handle_backend_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
