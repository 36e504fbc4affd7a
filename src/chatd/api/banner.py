"""The start-up banner: what is served, where, and a curl line to paste."""

from __future__ import annotations

import shlex
from typing import Any

import orjson
from starlette.applications import Starlette

from chatd import __version__
from chatd.config import Settings
from chatd.store.engine import redacted


def base_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: an any-address becomes loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def curl_line(url: str, model: str, keys: bool) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
    }
    auth = ' -H "Authorization: Bearer $CHATD_API_KEY"' if keys else ""
    return (
        f"curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        f"-d {shlex.quote(orjson.dumps(body).decode())}"
    )


def banner_fields(app: Starlette, settings: Settings, port: int) -> dict[str, Any]:
    """The banner's facts, in the order shown."""
    url = base_url(settings.host, port)
    models = [info.id for info in app.state.router.models()]
    timings: dict[str, float] = app.state.timings
    fields: dict[str, Any] = {"version": __version__, "models": models}
    for backend in app.state.router.backends:
        describe = getattr(backend, "describe", None)
        if describe is not None:
            fields.update(describe())
    fields["model load"] = f"{timings['model']:.1f} s"
    store = redacted(settings.sqlalchemy_url)
    fields["store"] = f"{store}, opened and migrated in {timings['store']:.1f} s"
    fields["keys"] = f"{len(settings.api_keys)} API keys" if settings.api_keys else "none needed"
    fields["api"] = f"{url}/v1"
    fields["chat page"] = f"{url}/"
    fields["metrics"] = f"{url}/metrics"
    fields["try"] = curl_line(url, models[0] if models else "", bool(settings.api_keys))
    return fields


def banner_text(fields: dict[str, Any]) -> str:
    """The banner as aligned `name  value` lines under a title."""
    rows = {k: v for k, v in fields.items() if k != "version"}
    rows["models"] = ", ".join(fields["models"])
    width = max(map(len, rows))
    lines = [f"chatd {fields['version']} is ready"]
    lines += [f"  {name.ljust(width)}  {value}" for name, value in rows.items()]
    return "\n".join(lines)
