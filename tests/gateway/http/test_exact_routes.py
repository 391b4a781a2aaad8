"""`ExactRoutes`: POST on its exact paths goes to the endpoint, anything else to the app behind it,
and an endpoint's error is answered by the app's handler for it, as the router's would be. The
whole gateway's errors on these paths (envelopes, request ids) are checked against a real engine in
test_errors.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.http.exact_routes import ExactRoutes


class _Behind:
    """The router's stand-in: answers 404 and records that it was asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await PlainTextResponse("router", status_code=404)(scope, receive, send)


class _Refused(ValueError):
    pass


async def _echo(request: Request) -> Response:
    return JSONResponse({"body": (await request.body()).decode(), "path": request.url.path})


async def _refuse(request: Request) -> Response:
    raise _Refused("no")


async def _crash(request: Request) -> Response:
    raise KeyError("bug")


async def _on_value_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": {"message": str(exc)}}, status_code=400)


def _client(behind: _Behind, handlers: dict[Any, Any], root_path: str = "") -> httpx.AsyncClient:
    app = ExactRoutes(
        behind,
        routes={"/v1/chat/completions": _echo, "/v1/refuse": _refuse, "/v1/crash": _crash},
        exception_handlers=handlers,
    )
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_post_on_an_exact_path_skips_the_router() -> None:
    behind = _Behind()
    async with _client(behind, {}) as client:
        answer = await client.post("/v1/chat/completions", content=b'{"model": "m"}')
    assert answer.status_code == 200
    assert answer.json() == {"body": '{"model": "m"}', "path": "/v1/chat/completions"}
    assert behind.paths == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("POST", "/v1/chat/completions/x"), ("POST", "/v1/models")],
)
async def test_anything_else_goes_to_the_router(method: str, path: str) -> None:
    behind = _Behind()
    async with _client(behind, {}) as client:
        answer = await client.request(method, path)
    assert (answer.status_code, answer.text) == (404, "router")
    assert behind.paths == [path]


async def test_a_root_path_is_left_to_the_router() -> None:
    behind = _Behind()
    async with _client(behind, {}, root_path="/api") as client:
        answer = await client.post("/api/v1/chat/completions")
    assert answer.text == "router"


async def test_an_error_is_answered_by_the_handler_of_its_nearest_class() -> None:
    behind = _Behind()
    handlers = {ValueError: _on_value_error, Exception: _on_value_error}
    async with _client(behind, handlers) as client:
        answer = await client.post("/v1/refuse")
    assert answer.status_code == 400
    assert answer.json() == {"error": {"message": "no"}}


async def test_an_error_without_a_handler_goes_to_the_layers_outside() -> None:
    # Exception's own handler belongs to ServerErrorMiddleware (EdgeMiddleware's 500), not here.
    handlers = {ValueError: _on_value_error, Exception: _on_value_error}
    async with _client(_Behind(), handlers) as client:
        with pytest.raises(KeyError):
            await client.post("/v1/crash")
