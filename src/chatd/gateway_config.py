"""The gateway's part of chatd.toml: `[[upstreams]]` and `[[routes]]`, checked at start.

Every mistake is a `ConfigError` whose message is one line naming the entry and the
key; an upstream's API key is read from its `api_key_env` here and never appears in
any message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chatd.backend import UpstreamSpec

KINDS = ("openai", "anthropic")
STRATEGIES = ("fallback", "balance")
LOCAL = "local"  # the local engine's vendor prefix: "local/<id>"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UPSTREAM_KEYS = frozenset(
    {
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "models",
        "timeout_s",
        "connect_timeout_s",
        "max_retries",
        "headers",
        "forward_store",
        "relay_responses",
        "circuit_failures",
        "circuit_cooldown_s",
    }
)
_ROUTE_KEYS = frozenset({"model", "targets", "strategy"})


class ConfigError(ValueError):
    """A configuration chatd cannot start with; the message is one line."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One `[[routes]]` entry: a model name served by several targets."""

    model: str
    targets: tuple[str, ...]
    strategy: Literal["fallback", "balance"] = "fallback"


@dataclass(slots=True)
class GatewayConfig:
    upstreams: list[UpstreamSpec] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)


def parse_gateway(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """The upstreams and routes of a config's tables (absent tables: none)."""
    env = os.environ if environ is None else environ
    upstreams = [_upstream(entry, i, env) for i, entry in enumerate(_tables(config, "upstreams"))]
    names = [spec.name for spec in upstreams]
    for name in names:
        if name == LOCAL:
            raise ConfigError(f'upstreams: the name "{LOCAL}" is the local model\'s prefix')
        if names.count(name) > 1:
            raise ConfigError(f'upstreams: two entries are named "{name}"')
    routes = [_route(entry, i) for i, entry in enumerate(_tables(config, "routes"))]
    by_name = {spec.name: spec for spec in upstreams}
    seen: set[str] = set()
    for route in routes:
        if route.model in seen:
            raise ConfigError(f'routes: two entries are named "{route.model}"')
        seen.add(route.model)
        for target in route.targets:
            _check_target(route, target, by_name)
    return GatewayConfig(upstreams, routes)


def _tables(config: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = config.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{key} must be an array of tables ([[{key}]])")
    return entries


def _where(table: str, index: int, entry: Mapping[str, Any], key: str = "name") -> str:
    name = entry.get(key)
    return f'{table}[{index}] "{name}"' if isinstance(name, str) else f"{table}[{index}]"


def _upstream(entry: Mapping[str, Any], index: int, env: Mapping[str, str]) -> UpstreamSpec:
    where = _where("upstreams", index, entry)
    unknown = sorted(set(entry) - _UPSTREAM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    name = _string(entry, "name", where)
    if not _NAME.fullmatch(name) or "/" in name:
        raise ConfigError(f"{where}: name must be letters, digits, '.', '_' or '-'")
    kind = _string(entry, "kind", where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    base_url = _string(entry, "base_url", where)
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: base_url must start with http:// or https://")
    api_key = None
    if "api_key_env" in entry:
        var = _string(entry, "api_key_env", where)
        api_key = env.get(var)
        if not api_key:
            raise ConfigError(f"{where}: the environment variable {var} (api_key_env) is not set")
    models = entry.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)
    ):
        raise ConfigError(f"{where}: models must be a list of model ids")
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}: headers must be a table of strings")
    forward_store = entry.get("forward_store", False)
    if not isinstance(forward_store, bool):
        raise ConfigError(f"{where}: forward_store must be true or false")
    relay_responses = entry.get("relay_responses", True)
    if not isinstance(relay_responses, bool):
        raise ConfigError(f"{where}: relay_responses must be true or false")
    return UpstreamSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        models=list(models) if models is not None else None,
        timeout_s=_number(entry, "timeout_s", where, 600.0),
        connect_timeout_s=_number(entry, "connect_timeout_s", where, 10.0),
        max_retries=int(_number(entry, "max_retries", where, 2, integer=True)),
        headers=dict(headers),
        forward_store=forward_store,
        relay_responses=relay_responses,
        circuit_failures=int(_number(entry, "circuit_failures", where, 5, integer=True)),
        circuit_cooldown_s=_number(entry, "circuit_cooldown_s", where, 30.0),
    )


def _route(entry: Mapping[str, Any], index: int) -> RouteSpec:
    where = _where("routes", index, entry, "model")
    unknown = sorted(set(entry) - _ROUTE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    model = _string(entry, "model", where)
    targets = entry.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"{where}: targets must be a non-empty list of model ids")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"{where}: a target is listed twice")
    strategy = entry.get("strategy", "fallback")
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"{where}: unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})"
        )
    return RouteSpec(model, tuple(targets), strategy)


def _check_target(route: RouteSpec, target: str, upstreams: Mapping[str, UpstreamSpec]) -> None:
    vendor, slash, model = target.partition("/")
    where = f'routes "{route.model}"'
    if not slash or not model:
        raise ConfigError(f"{where}: target {target!r} is not written vendor/model")
    if vendor == LOCAL:
        return  # checked against the local model's ids once it is loaded
    spec = upstreams.get(vendor)
    if spec is None:
        raise ConfigError(f"{where}: target {target!r} names no upstream {vendor!r}")
    if spec.models is not None and model not in spec.models:
        raise ConfigError(f"{where}: target {target!r}: upstream {vendor!r} has no model {model!r}")


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _number(
    entry: Mapping[str, Any], key: str, where: str, default: float, *, integer: bool = False
) -> float:
    value = entry.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0:
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise ConfigError(f"{where}: {key} must be {kind}")
    return value
