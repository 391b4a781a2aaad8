"""Large uploads never stall token streams: a gateway relays a paced token stream while it reads a
120-page PDF for another request. The engine is a stand-in that emits one token event every 10 ms
from the gateway's own event loop, so the stream's gaps measure the gateway alone (vLLM on the
same two cores would add its own pauses: its CPU threads take every core while they generate)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway import Settings, create_app
from tests.adapters.media import data_url, text_pdf
from tests.servers import ThreadedServer

TOKENS = 600
PACE_S = 0.01


def paced_engine(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
    body = orjson.loads(request.content)
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200, json={"id": "c", "object": "chat.completion", "choices": [choice], "usage": usage}
        )

    async def events() -> Any:
        for _ in range(TOKENS):
            await asyncio.sleep(PACE_S)
            choice = {"index": 0, "delta": {"content": "x"}}
            yield (
                b"data: "
                + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice]})
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    return httpx.Response(200, content=events(), headers={"content-type": "text/event-stream"})


@pytest.fixture(scope="module", params=["process", "thread"])
def gateway(request: pytest.FixtureRequest, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = gateway_settings(auth_enabled=False, media_max_pages=200, media_executor=request.param)
    client = httpx.AsyncClient(transport=httpx.MockTransport(paced_engine))
    with ThreadedServer(create_app(settings, http_client=client)) as server:
        yield server.url


async def test_stream_keeps_flowing_while_a_big_pdf_is_processed(gateway: str) -> None:
    lines = "\n".join(
        f"Line {n}: the quick brown fox jumps over the lazy dog, again and again." for n in range(45)
    )
    pdf = text_pdf([lines] * 120)  # 120 dense pages: about half a second of pypdf work on a quiet core
    part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf"), "filename": "big.pdf"}}
    arrivals: list[float] = []
    window: list[float] = []
    flowing = asyncio.Event()
    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        # A gateway in service has its media workers running: start them before measuring.
        note = {"type": "file", "file": {"file_data": data_url(b"warm up", "text/plain")}}
        warm = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": [note]}]}
        )
        assert warm.status_code == 200, warm.text

        async def stream() -> None:
            body = {"model": "m", "messages": [{"role": "user", "content": "Go."}], "stream": True}
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        arrivals.append(time.monotonic())
                        if len(arrivals) == 5:
                            flowing.set()

        async def big_pdf() -> None:
            await flowing.wait()
            window.append(time.monotonic())
            body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
            response = await http.post("/v1/chat/completions", json=body)
            window.append(time.monotonic())
            assert response.status_code == 200, response.text
            assert response.json()["usage"]["tantra_media"]["pages"] == 120

        await asyncio.gather(stream(), big_pdf())
    start, end = window
    during = [start, *(t for t in arrivals if start < t <= end)]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    print(f"PDF took {end - start:.2f} s; {len(during) - 1} tokens meanwhile; largest gap {max(gaps):.3f} s")
    assert end < arrivals[-1], "the stream outlasts the PDF"
    assert end - start > 0.3, "the PDF should take a while, or this test shows nothing"
    # On the event loop, the PDF's whole time would be one gap (1.6 s of 1.7 s when tried);
    # off it, the 10 ms pace barely moves.
    assert max(gaps) < max(0.2, (end - start) / 4)
