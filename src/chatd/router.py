"""Model name -> Backend, with aliases."""

from __future__ import annotations

from chatd.backend import (
    Backend,
    BackendError,
    ModelInfo,
    RelaysResponses,
    SupportsResponsesRelay,
)


class UnknownModel(BackendError):
    """No backend answers to this model (or the caller may not use it)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            status=404,
        )
        self.model = model


class DuplicateModel(ValueError):
    """Two backends claim one model id: a configuration error found at start-up."""


class Router:
    """Resolves the `model` of a request to the backend that serves it."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self.by_id: dict[str, tuple[Backend, ModelInfo]] = {}
        for backend in backends:
            for info in backend.list_models():
                if info.id in self.by_id:
                    raise DuplicateModel(f"model id {info.id!r} is served by two backends")
                self.by_id[info.id] = (backend, info)

    def find(self, model: str) -> Backend | None:
        entry = self.by_id.get(model)
        return entry[0] if entry else None

    def resolve(self, model: str) -> Backend:
        backend = self.find(model)
        if backend is None:
            raise UnknownModel(model)
        return backend

    def responses_relay(self, model: str) -> tuple[str, str, SupportsResponsesRelay] | None:
        """(upstream, its model id, adapter) when `model`'s Responses API is relayed."""
        backend = self.find(model)
        return backend.responses_relay(model) if isinstance(backend, RelaysResponses) else None

    def relay_upstream(self, name: str) -> SupportsResponsesRelay | None:
        """The adapter that relays the Responses API of the upstream `name`."""
        for backend in self.backends:
            if isinstance(backend, RelaysResponses):
                relay = backend.relay_upstream(name)
                if relay is not None:
                    return relay
        return None

    def info(self, model: str) -> ModelInfo | None:
        entry = self.by_id.get(model)
        return entry[1] if entry else None

    def models(self) -> list[ModelInfo]:
        return [info for _, info in self.by_id.values()]

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()
