"""Media made in the tests with real writers: Pillow for images, reportlab for PDFs, PyAV for video."""

from __future__ import annotations

import base64
import io
from fractions import Fraction
from typing import Any

import av
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas


def text_image(text: str, size: tuple[int, int] = (900, 140), font_size: int = 48) -> Image.Image:
    image = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=font_size)
    ImageDraw.Draw(image).text((24, (size[1] - font_size) // 2), text, fill="black", font=font)
    return image


def png(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **save)
    return out.getvalue()


def jpeg(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, **save)
    return out.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with a real text layer, one string per page."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for text in pages:
        pdf.setFont("Helvetica", 14)
        y = 780
        for line in text.splitlines():
            pdf.drawString(72, y, line)
            y -= 20
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def scanned_pdf(text: str) -> bytes:
    """A PDF page that is only a picture of text (no text layer), as a scanner makes it."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.drawImage(ImageReader(text_image(text, (1200, 200), 64)), 36, 600, width=520, height=87)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def text_video(
    captions: list[str],
    seconds_each: float = 1.0,
    fps: int = 10,
    fmt: str = "mp4",
    soundtrack: bytes | None = None,
) -> bytes:
    """A video showing each caption for `seconds_each` seconds (mpeg4 in MP4, made with PyAV),
    with `soundtrack` (any audio file PyAV reads) as its AAC audio track when given."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = 640, 160
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        track = container.add_stream("aac", rate=22_050) if soundtrack is not None else None
        index = 0
        for caption in captions:
            picture = text_image(caption, (640, 160), 40)
            for _ in range(round(seconds_each * fps)):
                frame = av.VideoFrame.from_image(picture)
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if track is not None and soundtrack is not None:
            _mux_soundtrack(container, track, soundtrack)
    return out.getvalue()


def _mux_soundtrack(container: Any, track: Any, audio: bytes) -> None:
    resampler = av.AudioResampler(format="fltp", layout=track.layout.name, rate=22_050, frame_size=1024)
    with av.open(io.BytesIO(audio), mode="r") as source:
        for frame in [*source.decode(audio=0), None]:
            for converted in resampler.resample(frame):
                container.mux(track.encode(converted))
    container.mux(track.encode(None))
