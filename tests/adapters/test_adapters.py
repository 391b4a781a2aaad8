"""The adapters on their own: real images, PDFs and videos made in the test, no gateway or engine."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject

from adapters import (
    TEXT_ONLY,
    ImageFilter,
    Job,
    MediaError,
    MediaLimits,
    Modality,
    Ocr,
    Preprocessor,
    SizeTypePolicy,
    Tally,
    Verdict,
    check_counts,
    find_media,
    load_check,
    route,
)
from adapters.images import ImageFacts, fit_budget, open_image
from adapters.limits import Stop
from adapters.sources import decode_data_url
from tests.adapters.media import data_url, jpeg, png, scanned_pdf, text_image, text_pdf, text_video

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")


def preprocessor(**limits: Any) -> Preprocessor:
    return Preprocessor(MediaLimits(**limits), Ocr(), ImageFilter([SizeTypePolicy()]))


def chat(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, *parts]}]}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def file_part(data: bytes, mime: str, name: str = "doc.pdf") -> dict[str, Any]:
    return {"type": "file", "file": {"file_data": data_url(data, mime), "filename": name}}


def video_part(data: bytes) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": data_url(data, "video/mp4")}}


def run(
    payload: dict[str, Any], accepts: tuple[Modality, ...] = ("text",), **limits: Any
) -> tuple[list[Any], Tally]:
    pre = preprocessor(**limits)
    parts = find_media(payload)
    check_counts(parts, pre.limits)
    jobs = [Job(p, route(p, accepts, can_derive_text=True)) for p in parts]
    outcome = pre.run(jobs)
    assert outcome.tally is not None
    return outcome.parts, outcome.tally


def refused(payload: dict[str, Any], **kwargs: Any) -> MediaError:
    with pytest.raises(MediaError) as caught:
        run(payload, **kwargs)
    return caught.value


@needs_tesseract
def test_image_text_is_read_by_ocr() -> None:
    parts, tally = run(chat(image_part(data_url(png(text_image("PURPLE ELEPHANT 42")), "image/png"))))
    assert parts[0]["type"] == "text"
    assert "PURPLE ELEPHANT 42" in parts[0]["text"]
    assert parts[0]["text"].startswith("[image 1, text read by OCR]")
    assert tally.images == 1 and tally.image_pixels == 900 * 140 and "ocr" in tally.modes


@needs_tesseract
def test_exif_orientation_is_applied_before_ocr() -> None:
    # Stored rotated, with EXIF saying "rotate 90° clockwise to view" (orientation 6).
    stored = text_image("UPRIGHT WORDS").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    parts, _ = run(chat(image_part(data_url(jpeg(stored, exif=exif), "image/jpeg"))))
    assert "UPRIGHT WORDS" in parts[0]["text"]


def test_vision_model_gets_a_normalised_image_within_its_pixel_budget() -> None:
    big = Image.new("RGB", (4000, 3000), "navy")
    parts, tally = run(chat(image_part(data_url(jpeg(big), "image/jpeg"))), accepts=("text", "image"))
    assert parts[0]["type"] == "image_url"
    sent = decode_data_url(parts[0]["image_url"]["url"], "p", Tally(MediaLimits()))
    assert sent.mime == "image/png"
    with Image.open(io.BytesIO(sent.data)) as image:
        assert image.width * image.height <= MediaLimits().image_pixel_budget
        assert abs(image.width / image.height - 4 / 3) < 0.01
    assert tally.modes == {"image"}


def test_fit_budget_never_scales_up() -> None:
    small = Image.new("RGB", (10, 10))
    assert fit_budget(small, 1000) is small


@needs_tesseract
def test_pdf_text_comes_with_page_markers() -> None:
    pdf = text_pdf(["The first page says alpha.", "The second page says beta.", "Third: gamma."])
    parts, tally = run(chat(file_part(pdf, "application/pdf", "report.pdf")))
    text = parts[0]["text"]
    assert text.startswith("[document report.pdf, 3 pages]")
    assert text.index("[page 1]") < text.index("alpha") < text.index("[page 2]") < text.index("beta")
    assert "[page 3]" in text and "gamma" in text and text.endswith("[end of document report.pdf]")
    assert tally.pages == 3 and tally.documents == 1


@needs_tesseract
def test_scanned_pdf_page_is_read_by_ocr() -> None:
    parts, tally = run(chat(file_part(scanned_pdf("SCANNED INVOICE 7731"), "application/pdf")))
    assert "[page 1, read by OCR]" in parts[0]["text"]
    assert "SCANNED INVOICE 7731" in parts[0]["text"]
    assert tally.images == 1 and "ocr" in tally.modes  # a scanned page's image counts as an image


def test_plain_text_file_and_bare_base64() -> None:
    import base64

    raw = {
        "type": "file",
        "file": {"file_data": base64.b64encode(b"just words").decode(), "filename": "a.txt"},
    }
    parts, _ = run(chat(raw))
    assert parts[0]["text"] == "[document a.txt]\njust words\n[end of document a.txt]"


@needs_tesseract
def test_video_frames_are_sampled_and_read() -> None:
    video = text_video(["FIRST CAPTION", "SECOND CAPTION", "THIRD CAPTION"], seconds_each=1.0)
    parts, tally = run(chat(video_part(video)), video_fps=1.0)
    text = parts[0]["text"]
    assert text.startswith("[video 1: 3.0 s, 3 frames sampled at 1 per second]")
    assert text.index("FIRST CAPTION") < text.index("SECOND CAPTION") < text.index("THIRD CAPTION")
    assert tally.videos == 1 and tally.video_seconds == pytest.approx(3.0) and tally.video_frames == 3


def test_video_past_the_seconds_limit_is_refused_before_decoding() -> None:
    error = refused(chat(video_part(text_video(["A", "B", "C"]))), max_video_seconds=2.0)
    assert error.code == "video_too_long" and error.param == "messages[0].content[1].video_url"


def test_video_passes_through_to_a_model_that_takes_video() -> None:
    part = video_part(text_video(["A"]))
    parts, tally = run(chat(part), accepts=("text", "video"))
    assert parts[0] is part and tally.video_seconds == pytest.approx(1.0)


def test_too_many_images_names_the_first_extra_one() -> None:
    url = data_url(png(Image.new("RGB", (8, 8))), "image/png")
    error = refused(chat(*[image_part(url)] * 3), max_images=2)
    assert error.code == "too_many_images" and error.param == "messages[0].content[3].image_url"


def test_too_many_pages() -> None:
    error = refused(chat(file_part(text_pdf(["a", "b", "c"]), "application/pdf")), max_pages=2)
    assert error.code == "too_many_pages" and error.status == 400


def test_oversize_part_is_413() -> None:
    url = data_url(png(Image.new("RGB", (64, 64))), "image/png")
    error = refused(chat(image_part(url)), max_part_bytes=10)
    assert error.status == 413 and error.code == "media_too_large"


def test_decompression_bomb_is_refused_from_its_header() -> None:
    # A 1-bit 20000 x 20000 PNG compresses to a few kilobytes and would decode to 400 MP.
    bomb = png(Image.new("1", (20_000, 20_000)), optimize=True)
    assert len(bomb) < 200_000
    error = refused(chat(image_part(data_url(bomb, "image/png"))))
    assert error.code == "image_too_large"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not an image at all", "invalid_image"),
        (png(Image.new("RGB", (64, 64)))[:60], "invalid_image"),
    ],
)
def test_corrupt_images(data: bytes, code: str) -> None:
    assert refused(chat(image_part(data_url(data, "image/png")))).code == code


def test_corrupt_pdf_and_video() -> None:
    assert refused(chat(file_part(b"%PDF-1.4 garbage", "application/pdf"))).code == "invalid_file"
    assert refused(chat(video_part(b"\x00\x01 not a video"))).code == "invalid_video"


def test_unknown_file_type_and_http_url_without_fetcher() -> None:
    assert refused(chat(file_part(b"\x00\x01", "application/zip", "a.zip"))).code == "unsupported_file_type"
    assert refused(chat(image_part("https://example.com/a.png"))).code == "url_not_allowed"


def test_audio_without_a_speech_adapter_is_a_400_naming_the_part() -> None:
    payload = chat({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})
    (part,) = find_media(payload)
    with pytest.raises(MediaError) as caught:
        route(part, TEXT_ONLY, can_derive_text=True)
    assert caught.value.param == "messages[0].content[1].input_audio"


def test_image_for_text_model_without_ocr_is_a_400() -> None:
    (part,) = find_media(chat(image_part("data:image/png;base64,AAAA")))
    with pytest.raises(MediaError) as caught:
        route(part, TEXT_ONLY, can_derive_text=False)
    assert caught.value.code == "unsupported_content_part"


def test_policy_refuses_disallowed_formats_and_strips() -> None:
    policy = SizeTypePolicy(["PNG"])
    image = Image.new("RGB", (10, 10))
    assert not policy(ImageFacts("p", "JPEG", 10, 10, 1, None), image).allowed
    assert not policy(ImageFacts("p", "PNG", 1, 10_000, 1, None), image).allowed
    assert policy(ImageFacts("p", "PNG", 10, 10, 1, None), image).allowed


def no_red_images() -> Any:
    """A stand-in classifier, plugged in by import path as an operator's would be."""

    def check(facts: ImageFacts, image: Image.Image) -> Verdict:
        red = image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
        return Verdict(not red, "classified as red" if red else "")

    return check


def test_plugged_in_classifier_refuses_and_its_decision_is_logged() -> None:
    from structlog.testing import capture_logs

    check = load_check("tests.adapters.test_adapters:no_red_images")
    pre = Preprocessor(MediaLimits(), Ocr(), ImageFilter([SizeTypePolicy(), check]))
    payload = chat(image_part(data_url(png(Image.new("RGB", (20, 20), "red")), "image/png")))
    (part,) = find_media(payload)
    with capture_logs() as logs, pytest.raises(MediaError) as caught:
        pre.run([Job(part, "native")])
    assert caught.value.code == "image_rejected" and "classified as red" in caught.value.message
    decisions = [(line["check"], line["allowed"]) for line in logs if line["event"] == "image_filter"]
    assert decisions == [("size_type", True), ("no_red_images.<locals>.check", False)]


def test_open_image_counts_against_the_request() -> None:
    tally = Tally(MediaLimits(max_total_pixels=150))
    open_image(png(Image.new("RGB", (10, 10))), "p", tally)
    with pytest.raises(MediaError):
        open_image(png(Image.new("RGB", (10, 10))), "p", tally)


@pytest.mark.parametrize("kind", ["image", "pdf", "video", "text"])
def test_random_and_mangled_bytes_are_only_ever_a_media_error(kind: str) -> None:
    import random

    rng = random.Random(kind)
    good = {
        "image": png(text_image("x", (64, 64), 10)),
        "pdf": text_pdf(["one", "two"]),
        "video": text_video(["A"], seconds_each=0.3),
        "text": b"hello",
    }[kind]
    for _ in range(25):
        data = bytearray(good)
        for _ in range(rng.randint(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(1, len(data))]
        part = {
            "image": image_part(data_url(bytes(data), "image/png")),
            "pdf": file_part(bytes(data), "application/pdf"),
            "video": video_part(bytes(data)),
            "text": file_part(bytes(data), "text/plain", "a.txt"),
        }[kind]
        try:
            run(chat(part))
        except MediaError as error:
            assert error.status in (400, 413) and error.param == "messages[0].content[1]." + (
                "image_url" if kind == "image" else "video_url" if kind == "video" else "file"
            )


def test_urls_that_do_not_parse_are_not_allowed() -> None:
    from adapters import UrlPolicy

    policy = UrlPolicy(["example.com", "*.cdn.net", "https://files.org/public/"])
    assert policy.allows("https://example.com/a.png") and policy.allows("http://x.cdn.net/a")
    assert policy.allows("https://files.org/public/a.pdf")
    assert not policy.allows("https://files.org/private/a.pdf")
    assert not policy.allows("https://example.com.evil.io/a.png")
    assert not policy.allows("http://[::1")
    assert not policy.allows("http://example.com:99999/")
    assert not policy.allows("ftp://example.com/a")


class CountingOcr(Ocr):
    """Tesseract as usual, with the size of every image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def read(self, image: Image.Image, param: str, timeout_s: float | None = None) -> str:
        self.sizes.append(image.size)
        return super().read(image, param, timeout_s)


@needs_tesseract
def test_ocr_reads_at_a_bounded_resolution_and_one_image_object_once() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(scanned_pdf("SCANNED INVOICE 7731"))))
    xobjects = writer.pages[0]["/Resources"].get_object()["/XObject"].get_object()  # type: ignore[index]
    xobjects[NameObject("/Again")] = next(iter(xobjects.values()))
    out = io.BytesIO()
    writer.write(out)
    ocr = CountingOcr()
    pre = Preprocessor(MediaLimits(ocr_pixel_budget=120_000), ocr, ImageFilter([SizeTypePolicy()]))
    payload = chat(file_part(out.getvalue(), "application/pdf"))
    outcome = pre.run([Job(part, "derive") for part in find_media(payload)])
    assert outcome.tally is not None and outcome.tally.images == 2  # shown twice, counted twice
    assert len(ocr.sizes) == 1  # read once
    width, height = ocr.sizes[0]
    assert width * height <= 120_000  # the 1200 x 200 scan, scaled down


def test_a_stopped_request_does_no_more_work(tmp_path: Path) -> None:
    flag = tmp_path / "stop"
    flag.touch()
    payload = chat(file_part(text_pdf(["one", "two"]), "application/pdf"))
    with pytest.raises(MediaError) as stopped:
        preprocessor().run([Job(part, "derive") for part in find_media(payload)], Stop.after(60, str(flag)))
    assert stopped.value.code == "cancelled"
    with pytest.raises(MediaError) as late:
        preprocessor().run([Job(part, "derive") for part in find_media(payload)], Stop.after(-1))
    assert late.value.code == "preprocessing_timeout"
