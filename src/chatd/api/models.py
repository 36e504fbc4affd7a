"""GET /v1/models and /v1/models/{id}: OpenAI `model` objects."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.api.auth import may_use
from chatd.api.errors import APIError
from chatd.api.responses import json_response
from chatd.backend import ModelInfo
from chatd.router import Router


def model_object(info: ModelInfo, started: int) -> dict[str, object]:
    created = started if info.created is None else info.created
    return {"id": info.id, "object": "model", "created": created, "owned_by": info.owned_by}


async def list_models(request: Request) -> Response:
    router: Router = request.app.state.router
    started: int = request.app.state.started
    data = [model_object(info, started) for info in router.models() if may_use(request, info.id)]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    router: Router = request.app.state.router
    model_id = request.path_params["model_id"]
    info = router.info(model_id)
    if info is None or not may_use(request, model_id):
        raise APIError(
            f"The model '{model_id}' does not exist",
            status=404,
            param="model",
            code="model_not_found",
        )
    return json_response(model_object(info, request.app.state.started))


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
