"""The backends a `Settings` asks for, built at start-up (outside the API layer)."""

from __future__ import annotations

import importlib
from pathlib import Path

from chatd.backend import Backend, UpstreamSpec
from chatd.config import Settings
from chatd.gateway_config import parse_gateway
from chatd.preflight import StartupError, available_memory, check_fits_memory, check_model_file

# kind -> "module:class" of its adapter, imported only when a config uses the kind
ADAPTERS = {
    "openai": "chatd.upstream.openai:OpenAIBackend",
    "anthropic": "chatd.upstream.anthropic:AnthropicBackend",
}


def adapter_for(spec: UpstreamSpec) -> Backend:
    module, _, name = ADAPTERS[spec.kind].partition(":")
    return getattr(importlib.import_module(module), name)(spec)


async def build_backends(settings: Settings) -> list[Backend]:
    """The local llama.cpp engine (unless `settings.local_model` is off) and the gateway."""
    backends: list[Backend] = []
    local = None
    if settings.local_model:
        local = _local_backend(settings)
        backends.append(local)
    gateway = parse_gateway(settings.config)
    if gateway.upstreams or gateway.routes:
        from chatd.routing import Gateway

        adapters = [adapter_for(spec) for spec in gateway.upstreams]
        try:
            for adapter in adapters:
                start = getattr(adapter, "start", None)
                if start is not None:
                    await start()
            backends.append(Gateway(adapters, gateway.routes, local))
        except BaseException:
            for adapter in adapters:
                await adapter.close()
            raise
    return backends


def _local_backend(settings: Settings) -> Backend:
    """The llama.cpp engine; StartupError for a model that is no GGUF, does not fit in
    memory or that llama.cpp refuses."""
    from chatd.engine.local import LocalBackend, model_id_from_path
    from chatd.engine.runtime import RuntimeError_, default_model_path, supports_gpu_offload

    try:
        path = Path(settings.model) if settings.model else default_model_path()
    except RuntimeError_ as exc:
        raise StartupError(str(exc)) from None
    check_model_file(path)
    if not (supports_gpu_offload() and settings.gpu_layers != 0):
        check_fits_memory(path, available_memory())
    ids = settings.model_names or [model_id_from_path(path)]
    try:
        return LocalBackend(
            path,
            # the bare ids as before, and "local/<id>" beside other vendors' "vendor/model"
            model_names=[*ids, *(f"local/{model_id}" for model_id in ids)],
            n_ctx=settings.ctx,
            n_threads=settings.threads,
            parallel=settings.parallel,
            queue_size=settings.queue_size,
            prefix_cache=settings.prefix_cache,
            flash_attn=settings.flash_attn,
            kv_type=settings.kv_type,
            gpu_layers=settings.gpu_layers,
        )
    except RuntimeError_ as exc:
        raise StartupError(
            f"{exc}: the file may be damaged or too new for llama-cpp-python "
            f"(or too big for memory at --ctx {settings.ctx})"
        ) from None
