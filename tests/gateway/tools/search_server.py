"""A stand-in for SearXNG's JSON API (`GET /search?q=...&format=json`): SearXNG itself is not
installed here, and the gateway's provider is only an HTTP client of that documented shape."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def searxng_app(asked: list[str]) -> Starlette:
    """A stand-in answering SearXNG's JSON API (SearXNG itself is not installed here)."""

    async def search(request: Request) -> JSONResponse:
        asked.append(request.query_params["q"])
        assert request.query_params["format"] == "json"
        results = [
            {"url": "https://fruit.example/papaya", "title": "Papaya", "content": "Papayas are PAPAYA-7."},
            {"url": "https://fruit.example/mango", "title": "Mango", "content": "Mangoes are sweet."},
        ]
        return JSONResponse({"query": request.query_params["q"], "results": results})

    return Starlette(routes=[Route("/search", search)])
