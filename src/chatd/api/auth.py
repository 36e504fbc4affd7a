"""API keys -> principals: `Authorization: Bearer KEY` or `x-api-key: KEY`."""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from chatd.api.errors import invalid_api_key

LOCAL_PRINCIPAL = "local"
OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/"})
OPEN_PREFIXES = ("/static/",)  # the chat page's files: the page asks for a key itself


def principal_of(key: str) -> str:
    """A stable, non-secret id for an API key."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


class AuthMiddleware:
    """Sets `request.state.principal`; rejects unknown keys with 401 invalid_api_key."""

    def __init__(self, app: ASGIApp, api_keys: list[str]) -> None:
        self.app = app
        self.keys = {key: principal_of(key) for key in api_keys}

    def _principal(self, key: str | None) -> str | None:
        if not self.keys:
            return LOCAL_PRINCIPAL
        if key is None:
            return None
        for known, principal in self.keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return principal
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        principal = self._principal(key_from_headers(scope["headers"]))
        if principal is None:
            await invalid_api_key().response()(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
