"""Issue 16, point 7: one small PDF must not occupy the media workers for hours. A scanned page
that shows the same image under many names was OCR'd once per name (a 555 KiB, 50-page PDF made
10,050 OCR calls); now every occurrence counts against the request's image and pixel budgets
before anything is decoded, the whole preparation has a deadline (`media_deadline_s`), and a
request whose client left stops its work."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from starlette.testclient import TestClient

from adapters import TEXT_ONLY, MediaLimits, UrlFetcher, UrlPolicy
from gateway import Settings, create_app
from gateway.errors import APIError
from gateway.media.service import MediaService, MediaWorkerSpec, media_executor
from tests.adapters.media import data_url, text_image
from tests.servers import ThreadedServer


def engine(request: httpx.Request) -> httpx.Response:
    """A stand-in engine: the media work is what is measured, not the model."""
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    return httpx.Response(
        200, json={"id": "c", "object": "chat.completion", "choices": [choice], "usage": usage}
    )


def scans(captions: list[str], aliases: int = 0) -> bytes:
    """A PDF of scanned pages (one picture of a caption each, no text layer); with `aliases`, each
    page's picture is also listed under that many more names, as the hostile PDF did."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for caption in captions:
        pdf.drawImage(ImageReader(text_image(caption, (1200, 200), 64)), 36, 600, width=520, height=87)
        pdf.showPage()
    pdf.save()
    if not aliases:
        return out.getvalue()
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(out.getvalue())))
    for page in writer.pages:
        xobjects = page["/Resources"].get_object()["/XObject"].get_object()  # type: ignore[index]
        original = next(iter(xobjects.values()))
        for n in range(aliases):
            xobjects[NameObject(f"/Alias{n}")] = original
    result = io.BytesIO()
    writer.write(result)
    return result.getvalue()


def undeclared_video(frames: int, fps: int) -> bytes:
    """A raw MPEG-4 stream (no container, so no declared length) of tiny blank frames."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="m4v") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.time_base = Fraction(1, fps)
        picture = Image.new("RGB", (64, 64), "white")
        for index in range(frames):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.fixture
def client(gateway_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        settings = gateway_settings(auth_enabled=False, **overrides)
        http = httpx.AsyncClient(transport=httpx.MockTransport(engine))
        test_client = TestClient(create_app(settings, http_client=http))
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


def ask(client: TestClient | httpx.Client, pdf: bytes, **options: Any) -> Any:
    part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf"), "filename": "scan.pdf"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    return client.post("/v1/chat/completions", json=body, **options)


def test_every_occurrence_of_an_image_counts_against_the_image_budget(
    client: Callable[..., TestClient],
) -> None:
    # 3 pages x 5 names of one picture: 15 images shown, over the 8 a request may hold.
    pdf = scans(["Invoice 1", "Invoice 2", "Invoice 3"], aliases=4)
    started = time.monotonic()
    answer = ask(client(), pdf)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "too_many_images")
    assert "at most 8 images" in error["message"]
    assert time.monotonic() - started < 30


def test_a_document_within_the_budgets_is_still_read(client: Callable[..., TestClient]) -> None:
    answer = ask(client(), scans(["Invoice 1", "Invoice 2"], aliases=1))
    assert answer.status_code == 200, answer.text
    media = answer.json()["usage"]["tantra_media"]
    assert media["pages"] == 2 and media["images"] == 4 and "ocr" in media["derived"]


def test_a_request_whose_media_outlast_the_deadline_is_refused_in_time(
    client: Callable[..., TestClient],
) -> None:
    pdf = scans([f"Page number {n} of a long scan" for n in range(12)])
    started = time.monotonic()
    answer = ask(client(media_deadline_s=0.5, media_max_images=20, media_max_total_pixels=10**9), pdf)
    elapsed = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "preprocessing_timeout" and "0.5 s" in error["message"]
    assert elapsed < 10


def test_a_video_without_a_declared_length_is_not_decoded_without_end(
    client: Callable[..., TestClient],
) -> None:
    # 2,000 frames in 4 s: within the 10 s allowed by their times, but far more frames than any
    # real video of that length (the cap: 120 per allowed second, 1,200 here).
    video = data_url(undeclared_video(2000, 500), "video/mp4")
    part = {"type": "video_url", "video_url": {"url": video}}
    answer = client(media_max_video_seconds=10).post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": [part]}]}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "video_too_long" and "more than 1200 frames" in error["message"]


def test_a_client_that_hangs_up_frees_the_worker(gateway_settings: Callable[..., Settings]) -> None:
    """Through HTTP: a client gives up on a long scan; the next request gets the only worker."""
    settings = gateway_settings(
        auth_enabled=False,
        media_workers=1,
        media_queue_timeout_s=4,
        media_max_images=100,
        media_max_total_pixels=10**9,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(engine))
    pdf = scans([f"Page number {n} of a long scan" for n in range(40)])  # tens of seconds of OCR
    note = {"type": "file", "file": {"file_data": data_url(b"a note", "text/plain")}}
    with ThreadedServer(create_app(settings, http_client=http)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": [note]}]}
            assert client.post("/v1/chat/completions", json=body).status_code == 200  # the worker is up
            with pytest.raises(httpx.ReadTimeout):
                ask(client, pdf, timeout=1.5)
            started = time.monotonic()
            answer = client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 4


async def test_work_stops_when_its_client_leaves() -> None:
    """A request cancelled mid-way (the client left) frees its worker within moments, not after
    its remaining pages were read: the next request gets the only worker."""
    spec = MediaWorkerSpec(MediaLimits(max_images=100, max_total_pixels=10**9))
    fetcher = UrlFetcher(UrlPolicy([]), httpx.AsyncClient(), timeout_s=1, max_bytes=1)
    media = MediaService(
        spec.preprocessor(),
        fetcher,
        lambda: media_executor(spec, "process", 1),
        concurrency=1,
        queue_timeout_s=4,
    )

    def request(part: dict[str, Any]) -> dict[str, Any]:
        return {"model": "m", "messages": [{"role": "user", "content": [part]}]}

    note = {"type": "file", "file": {"file_data": data_url(b"a note", "text/plain")}}
    pdf = scans([f"Page number {n} of a long scan" for n in range(40)])  # tens of seconds of OCR
    long = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf")}}
    try:
        assert await media.prepare(request(note), TEXT_ONLY) is not None  # the worker is up
        first = asyncio.create_task(media.prepare(request(long), TEXT_ONLY))
        await asyncio.sleep(1.0)
        first.cancel()
        started = time.monotonic()
        try:
            assert await media.prepare(request(note), TEXT_ONLY) is not None
        except APIError as busy:
            pytest.fail(f"the abandoned request still held the worker: {busy.status} {busy.code}")
        assert time.monotonic() - started < 4
    finally:
        await media.close()
