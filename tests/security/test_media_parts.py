"""Issue 16, point 6: every content part that can carry a URL, in any shape vLLM's chat parser reads
(`input_image`, `image_pil`, a part without `type`, a text part with a media field beside it...),
is checked like the known ones or refused with 400, so the engine is never handed a URL to fetch;
media the gateway fetched and checked goes on as its bytes (a data URL), never as the URL; and
with media processing off, parts with URLs are refused instead of forwarded."""

from __future__ import annotations

import base64
import io
import wave
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

MODEL = "omni"


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(16000)
        sound.writeframes(b"\0\0" * 1600)
    return out.getvalue()


def _png_data_url() -> str:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 90, 200)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


class Internal:
    """A server the engine must never be sent to; it counts what reaches it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.wav = _wav()

    async def serve(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        return Response(self.wav, media_type="audio/wav")


@pytest.fixture(scope="module")
def internal() -> Iterator[tuple[Internal, str]]:
    target = Internal()
    with ThreadedServer(Starlette(routes=[Route("/{path:path}", target.serve)])) as server:
        yield target, server.url


class Engine:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            self.bodies.append(request.content)
        message = {"role": "assistant", "content": "ok"}
        answer = {
            "id": "c",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
        return httpx.Response(200, json=answer)


def _ask(settings: Settings, part: dict[str, Any]) -> tuple[Any, Engine]:
    engine = Engine()
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)))
    content = [{"type": "text", "text": "What is this?"}, part]
    with TestClient(app) as client:
        answer = client.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
        )
    return answer, engine


@pytest.fixture
def settings_for(gateway_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**extra: Any) -> Settings:
        return gateway_settings(
            auth_enabled=False,
            models={MODEL: {"accepts": ["text", "image", "audio", "video"]}},
            media_executor="thread",
            media_fetch_timeout_s=2,
            **extra,
        )

    return make


def _shapes(url: str) -> dict[str, dict[str, Any]]:
    """Parts vLLM 0.32's chat parser would fetch `url` from (renderers/chat_utils.py)."""
    return {
        "input_image": {"type": "input_image", "image_url": url},
        "no type": {"image_url": {"url": url}},
        "no type, audio": {"audio_url": url},
        "text with a video beside": {"type": "text", "text": "hi", "uuid": "u1", "video_url": {"url": url}},
        "image_url with an audio beside": {
            "type": "image_url",
            "uuid": "u2",
            "image_url": {"url": _png_data_url()},
            "audio_url": {"url": url},
        },
        "image_pil": {"type": "image_pil", "image_pil": url},
        "unknown type": {"type": "image_link", "image_url": {"url": url}},
    }


@pytest.mark.parametrize("shape", list(_shapes("")))
def test_no_part_shape_hands_the_engine_a_url(
    shape: str, settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    url = base + "/latest/meta-data/"
    answer, engine = _ask(settings_for(), _shapes(url)[shape])
    assert not any(url.encode() in body for body in engine.bodies), f"the engine was sent the URL ({shape})"
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    # A part without `type` is already refused by the request schema (code None), the rest here.
    assert error["code"] in ("url_not_allowed", "unsupported_content_part", None)
    assert str(error["param"]).startswith("messages[0].content[1]")
    assert target.hits == [] or "/latest/meta-data/" not in target.hits


def test_media_off_refuses_urls_instead_of_forwarding_them(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    _, base = internal
    url = base + "/latest/meta-data/"
    part = {"type": "image_url", "image_url": {"url": url}}
    answer, engine = _ask(settings_for(media_enabled=False), part)
    assert engine.bodies == [], "with media off the engine was handed the URL to fetch"
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "url_not_allowed"


def test_fetched_media_reaches_the_engine_as_bytes_not_as_the_url(
    settings_for: Callable[..., Settings], internal: tuple[Internal, str]
) -> None:
    target, base = internal
    url = base + "/public/hello.wav"
    settings = settings_for(
        media_url_allowlist=[base + "/public/"], media_url_allowed_networks=["127.0.0.0/8"]
    )
    answer, engine = _ask(settings, {"type": "audio_url", "audio_url": {"url": url}})
    assert answer.status_code == 200, answer.text
    assert target.hits.count("/public/hello.wav") == 1
    sent = orjson.loads(engine.bodies[-1])["messages"][0]["content"][1]["audio_url"]["url"]
    assert sent.startswith("data:audio/wav;base64,"), "the engine got the URL and would fetch it again"
