"""The backends a `Settings` asks for, built at start-up (outside the API layer)."""

from __future__ import annotations

from pathlib import Path

from chatd.backend import Backend
from chatd.config import Settings
from chatd.preflight import StartupError, available_memory, check_fits_memory, check_model_file


def build_backends(settings: Settings) -> list[Backend]:
    """The local llama.cpp engine on `settings.model` (imported only when asked for).

    A model that is no GGUF, does not fit in memory or that llama.cpp refuses raises
    StartupError.
    """
    from chatd.engine.local import LocalBackend
    from chatd.engine.runtime import RuntimeError_, default_model_path, supports_gpu_offload

    try:
        path = Path(settings.model) if settings.model else default_model_path()
    except RuntimeError_ as exc:
        raise StartupError(str(exc)) from None
    check_model_file(path)
    if not (supports_gpu_offload() and settings.gpu_layers != 0):
        check_fits_memory(path, available_memory())
    try:
        backend = LocalBackend(
            path,
            model_names=settings.model_names or None,
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
    return [backend]
