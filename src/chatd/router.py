"""Model name -> Backend, with aliases."""

from __future__ import annotations

from chatd.api.errors import model_not_found
from chatd.backend import Backend


class Router:
    """Resolves the `model` of a request to the backend that serves it."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self.by_id: dict[str, Backend] = {}
        for backend in backends:
            for model_id in backend.model_ids:
                self.by_id.setdefault(model_id, backend)

    def resolve(self, model: str) -> Backend:
        backend = self.by_id.get(model)
        if backend is None:
            raise model_not_found(model)
        return backend

    def model_ids(self) -> list[tuple[str, Backend]]:
        return list(self.by_id.items())

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()
