"""The chat page: `/` and its static files under `/static/`, open without a key."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


async def index(request: Request) -> Response:
    # no-cache: the browser revalidates (ETag), so an upgraded server serves its own page
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
