"""GET /v1/models and /v1/models/{id}: OpenAI `model` objects."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.api.errors import APIError
from chatd.api.responses import json_response
from chatd.router import Router


def model_object(model_id: str, owned_by: str, created: int) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


async def list_models(request: Request) -> Response:
    router: Router = request.app.state.router
    created: int = request.app.state.started
    data = [model_object(mid, b.owned_by, created) for mid, b in router.model_ids()]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    router: Router = request.app.state.router
    model_id = request.path_params["model_id"]
    backend = router.by_id.get(model_id)
    if backend is None:
        raise APIError(
            f"The model '{model_id}' does not exist",
            status=404,
            param="model",
            code="model_not_found",
        )
    return json_response(model_object(model_id, backend.owned_by, request.app.state.started))


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
