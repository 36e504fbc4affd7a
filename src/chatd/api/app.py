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

from chatd.api import chat, messages, metrics, models, openapi, stored, web
from chatd.api.access import AccessLogMiddleware
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
from chatd.api.messages_errors import MessagesErrorMiddleware
from chatd.api.oairesponses import endpoints as oairesponses
from chatd.api.oairesponses.runs import Runs
from chatd.api.ratelimit import LimitsMiddleware
from chatd.api.responses import json_response
from chatd.backend import Backend, BackendError
from chatd.config import Settings
from chatd.keys import load_keyring
from chatd.preflight import StartupError
from chatd.ratelimits import create_limiter
from chatd.router import Router
from chatd.store import CompletionStore, create_store
from chatd.store.engine import redacted


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


BackendFactory = Callable[[Settings], list[Backend] | Awaitable[list[Backend]]]


async def start_store(settings: Settings) -> CompletionStore:
    """The store, migrated; StartupError (one line) when its database cannot be reached."""
    try:
        store = create_store(settings)
        await store.start()
    except Exception as exc:
        raise StartupError(database_error(settings.sqlalchemy_url, exc)) from None
    return store


def database_error(url: str, exc: Exception) -> str:
    """What went wrong with the database at `url` (its password hidden), and what to do."""
    reason = (str(getattr(exc, "orig", None) or exc) or type(exc).__name__).splitlines()[0]
    return (
        f"cannot use the database {redacted(url)}: {reason}; check that it is running and that "
        "--database-url is right (e.g. postgresql+asyncpg://user:password@host:5432/db)"
    )


def create_app(settings: Settings, backends: BackendFactory) -> Starlette:
    """The app for `settings`, serving the backends that `backends(settings)` builds at start."""
    keyring = load_keyring(settings)
    limiter = create_limiter(settings.redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # the store first: a database that cannot be reached fails in a second, not after
        # the model has loaded
        began = time.perf_counter()
        app.state.store = await start_store(settings)
        app.state.timings = {"store": time.perf_counter() - began}
        began = time.perf_counter()
        try:
            built = backends(settings)
            app.state.router = Router(await built if inspect.isawaitable(built) else built)
        except BaseException:
            await app.state.store.close()
            raise
        app.state.timings["model"] = time.perf_counter() - began
        app.state.started = int(time.time())
        await limiter.start()
        try:
            yield
        finally:
            await app.state.response_runs.close()
            await limiter.close()
            await app.state.store.close()
            await app.state.router.close()

    drain = Drain()
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            *chat.routes,
            *stored.routes,
            # the OpenAI Responses API
            *oairesponses.routes,
            *models.routes,
            *metrics.routes,
            *openapi.routes,
            *web.routes,
            # the Anthropic Messages API
            *messages.routes,
        ],
        middleware=[
            Middleware(AccessLogMiddleware),
            # the Anthropic Messages API: every error on its paths in its own shape
            Middleware(MessagesErrorMiddleware),
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
    app.state.response_runs = Runs()
    return app
