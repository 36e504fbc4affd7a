"""API keys -> principals: `Authorization: Bearer KEY` or `x-api-key: KEY`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from chatd.api.errors import invalid_api_key
from chatd.keys import Keyring

OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/"})
OPEN_PREFIXES = ("/static/",)  # the chat page's files: the page asks for a key itself


def key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


def may_use(request: Request, model: str) -> bool:
    """Whether the caller's key allows `model`, as the client wrote it."""
    return bool(request.state.key.allows(model))


class AuthMiddleware:
    """Sets `request.state.principal` and `.key`; rejects unknown keys: 401 invalid_api_key."""

    def __init__(self, app: ASGIApp, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = self.keyring.find(key_from_headers(scope["headers"]))
        if key is None:
            await invalid_api_key().response()(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = key.principal
        state["key"] = key
        await self.app(scope, receive, send)
