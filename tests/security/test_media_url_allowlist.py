"""Issue 16, point 5: the media URL allow-list is matched on the parsed URL (scheme, host, port,
path segments), never as a string prefix; userinfo is refused; and a host that resolves to a
loopback, private, link-local or metadata address is not fetched from unless the operator opened
that network (`media_url_allowed_networks`).

A local server on 127.0.0.1 plays the internal service: each test shows it is never reached and
the client gets a 400 in OpenAI's envelope."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.servers import ThreadedServer

VISION = "vision"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


class Internal:
    """The service an attacker wants reached: it counts every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.png = _png()

    async def serve(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        return Response(self.png, media_type="image/png")


@pytest.fixture(scope="module")
def internal() -> Iterator[tuple[Internal, str]]:
    target = Internal()
    app = Starlette(routes=[Route("/{path:path}", target.serve)])
    with ThreadedServer(app) as server:
        yield target, server.url


class Engine:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(orjson.loads(request.content))
        answer = {
            "id": "c",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
        return httpx.Response(200, json=answer)


def _ask(settings: Settings, url: str) -> tuple[Any, Engine]:
    engine = Engine()
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)))
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    with TestClient(app) as client:
        answer = client.post(
            "/v1/chat/completions", json={"model": VISION, "messages": [{"role": "user", "content": content}]}
        )
    return answer, engine


@pytest.fixture
def settings_for(gateway_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(allowlist: list[str], **extra: Any) -> Settings:
        return gateway_settings(
            auth_enabled=False,
            models={VISION: {"accepts": ["text", "image"]}},
            media_url_allowlist=allowlist,
            media_executor="thread",
            media_fetch_timeout_s=2,
            **extra,
        )

    return make


def _refused(answer: Any) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "url_not_allowed"
    assert error["param"] == "messages[0].content[1].image_url"


def test_userinfo_cannot_smuggle_another_host_past_a_prefix(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    before = len(target.hits)
    host = base.removeprefix("http://")
    answer, engine = _ask(settings_for(["http://cdn.example.com"]), f"http://cdn.example.com@{host}/a.png")
    assert len(target.hits) == before, "the internal server was reached through userinfo"
    _refused(answer)
    assert engine.bodies == []


def test_a_prefix_matches_whole_path_segments_only(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    before = len(target.hits)
    settings = settings_for([base + "/public"], media_url_allowed_networks=["127.0.0.1/32"])
    answer, _ = _ask(settings, base + "/public-secret/a.png")
    assert len(target.hits) == before, "/public-secret was fetched under the prefix /public"
    _refused(answer)


def test_an_allowed_url_on_a_loopback_address_is_not_fetched(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    before = len(target.hits)
    answer, _ = _ask(settings_for([base + "/"]), base + "/a.png")
    assert len(target.hits) == before, "a loopback address was fetched without the operator opening it"
    _refused(answer)


def test_metadata_addresses_are_refused_before_any_connection(settings_for: Callable[..., Settings]) -> None:
    answer, _ = _ask(settings_for(["169.254.169.254"]), "http://169.254.169.254/latest/meta-data/")
    _refused(answer)


def test_the_operator_can_open_a_private_network_explicitly(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    before = len(target.hits)
    settings = settings_for([base + "/public/"], media_url_allowed_networks=["127.0.0.0/8"])
    answer, engine = _ask(settings, base + "/public/a.png")
    assert answer.status_code == 200, answer.text
    assert target.hits[before:] == ["/public/a.png"]
    sent = engine.bodies[-1]["messages"][0]["content"][1]["image_url"]["url"]
    assert sent.startswith("data:image/png;base64,")  # the engine never gets the URL
