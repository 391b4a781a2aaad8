"""The gateway's media path against a recording stand-in for the engine (no vLLM needed): capability
routing (a model declared vision-capable gets the image, a text-only one gets OCR text), byte
passthrough of plain requests, usage.tantra_media (streamed and not), the allow-list, and the
4xx envelopes naming the part. The same routing against vLLM serving a real vision-language
checkpoint is tests/gateway/media/test_media_vl_engine.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from gateway import Settings, create_app
from tests.adapters.media import data_url, png, text_image, text_pdf
from tests.gateway.helpers import envelope
from tests.servers import ThreadedServer

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")

VISION, TEXT = "vision-model", "text-model"
SIGN = png(text_image("OPEN SESAME 99"))


class FakeEngine:
    """Answers like vLLM's OpenAI server and keeps every body it was sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            cards = [{"id": name, "object": "model", "max_model_len": 4096} for name in (VISION, TEXT)]
            return httpx.Response(200, json={"object": "list", "data": cards})
        self.bodies.append(request.content)
        body = orjson.loads(request.content)
        usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
        if body.get("stream"):
            events = [
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": "ok"}}],
                },
                {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage},
            ]
            sse = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"

            async def chunks() -> Any:
                yield sse

            return httpx.Response(200, content=chunks(), headers={"content-type": "text/event-stream"})
        answer = {
            "id": "c",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
        return httpx.Response(200, json=answer)

    def last(self) -> dict[str, Any]:
        return dict(orjson.loads(self.bodies[-1]))


@pytest.fixture(scope="module")
def images_host() -> Iterator[str]:
    """A local web server with an image, a redirect off the allow-list, and a file too large."""

    async def sign(_: Any) -> Response:
        return Response(SIGN, media_type="image/png")

    async def away(_: Any) -> Response:
        return Response(status_code=302, headers={"location": "http://localhost:1/x.png"})

    async def huge(_: Any) -> Response:
        return Response(b"\x89PNG" + b"\0" * 300_000, media_type="image/png")

    app = Starlette(routes=[Route("/sign.png", sign), Route("/away", away), Route("/huge.png", huge)])
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def gateway(fake: FakeEngine, gateway_settings: Callable[..., Settings], images_host: str) -> Iterator[str]:
    settings = gateway_settings(
        auth_enabled=False,
        models={VISION: {"accepts": ["text", "image"]}, TEXT: {"accepts": ["text"]}},
        media_url_allowlist=[images_host + "/"],
        # The image server is on loopback, which a gateway fetches from only when opened explicitly.
        media_url_allowed_networks=["127.0.0.1/32"],
        media_max_images=3,
        media_max_part_bytes=200_000,
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    with ThreadedServer(create_app(settings, http_client=client)) as server:
        yield server.url


def chat(model: str, *parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "What does it say?"}, *parts]
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


def post(gateway: str, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        gateway + "/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=60,
    )


@needs_tesseract
def test_text_only_model_gets_ocr_text(gateway: str, fake: FakeEngine) -> None:
    response = post(gateway, chat(TEXT, image(data_url(SIGN, "image/png")), temperature=0.5, top_k=3))
    assert response.status_code == 200, response.text
    sent = fake.last()
    parts = sent["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "text"]
    assert "OPEN SESAME 99" in parts[1]["text"]
    assert sent["temperature"] == 0.5 and sent["top_k"] == 3  # every other field kept
    media = response.json()["usage"]["tantra_media"]
    assert media["images"] == 1 and media["derived"] == ["ocr"] and media["derived_text_chars"] > 0


def test_vision_model_gets_the_image(gateway: str, fake: FakeEngine) -> None:
    response = post(gateway, chat(VISION, image(data_url(SIGN, "image/png"))))
    assert response.status_code == 200, response.text
    part = fake.last()["messages"][0]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["detail"] == "low"
    assert part["image_url"]["url"].startswith("data:image/png;base64,")
    assert response.json()["usage"]["tantra_media"]["derived"] == ["image"]


def test_plain_request_bytes_pass_through(gateway: str, fake: FakeEngine) -> None:
    raw = (
        b'{"model": "text-model",  "messages": '
        b'[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}'
    )
    response = post(gateway, raw)
    assert response.status_code == 200
    assert fake.bodies[-1] == raw
    assert "tantra_media" not in response.json()["usage"]


@needs_tesseract
def test_stream_usage_reports_media(gateway: str) -> None:
    body = chat(TEXT, image(data_url(SIGN, "image/png")), stream=True, stream_options={"include_usage": True})
    with httpx.stream(
        "POST", gateway + "/v1/chat/completions", content=orjson.dumps(body), timeout=60
    ) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
    usage = orjson.loads(events[-1])["usage"]
    assert usage["prompt_tokens"] == 11 and usage["tantra_media"]["images"] == 1


@needs_tesseract
def test_pdf_for_a_text_model(gateway: str, fake: FakeEngine) -> None:
    pdf = text_pdf(["Page one talks of apples.", "Page two talks of pears."])
    part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf"), "filename": "fruit.pdf"}}
    response = post(gateway, chat(VISION, part))  # documents become text for vision models too
    assert response.status_code == 200, response.text
    text = fake.last()["messages"][0]["content"][1]["text"]
    assert "[page 1]\nPage one talks of apples." in text and "[page 2]\nPage two talks of pears." in text
    assert response.json()["usage"]["tantra_media"]["pages"] == 2


def test_allowed_url_is_fetched(gateway: str, images_host: str, fake: FakeEngine) -> None:
    response = post(gateway, chat(VISION, image(images_host + "/sign.png")))
    assert response.status_code == 200, response.text
    assert fake.last()["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png")


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("https://example.com/cat.png", 400, "url_not_allowed"),
        ("file:///etc/passwd", 400, "url_not_allowed"),
        ("{host}/away", 400, "url_not_allowed"),
        ("{host}/missing.png", 400, "url_fetch_failed"),
        ("{host}/huge.png", 413, "media_too_large"),
    ],
)
def test_url_refusals(gateway: str, images_host: str, url: str, status: int, code: str) -> None:
    response = post(gateway, chat(VISION, image(url.format(host=images_host))))
    error = envelope(response, status)
    assert error["code"] == code and error["param"] == "messages[0].content[1].image_url"


def test_refusals_name_the_part(gateway: str) -> None:
    tiny = image(data_url(png(text_image("x", (8, 8), 4)), "image/png"))
    error = envelope(post(gateway, chat(VISION, *[tiny] * 4)), 400)
    assert error["code"] == "too_many_images" and error["param"] == "messages[0].content[4].image_url"

    error = envelope(post(gateway, chat(VISION, image("data:image/png;base64,bm90IGFuIGltYWdl"))), 400)
    assert error["code"] == "invalid_image" and error["param"] == "messages[0].content[1].image_url"

    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    error = envelope(post(gateway, chat(TEXT, audio)), 400)
    assert error["code"] == "invalid_audio"
    assert error["param"] == "messages[0].content[1].input_audio"

    big = image(data_url(b"\x89PNG" + b"\0" * 250_000, "image/png"))
    error = envelope(post(gateway, chat(VISION, big)), 413)
    assert error["code"] == "media_too_large"
