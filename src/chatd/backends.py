"""The backends a `Settings` asks for, built at start-up (outside the API layer)."""

from __future__ import annotations

from chatd.backend import Backend
from chatd.config import Settings


def build_backends(settings: Settings) -> list[Backend]:
    """The local llama.cpp engine on `settings.model` (imported only when asked for)."""
    from chatd.engine.local import LocalBackend

    return [
        LocalBackend(
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
    ]
