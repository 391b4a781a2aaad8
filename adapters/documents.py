"""Documents as text for a text-only model: PDFs page by page (with page markers, scanned pages read
by OCR) and plain-text files as they are."""

from __future__ import annotations

import io
import logging
from pathlib import PurePosixPath
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from adapters.errors import MediaError
from adapters.images import fit_budget, open_image
from adapters.limits import Tally
from adapters.ocr import Ocr

PDF = "application/pdf"
TEXT_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/csv", "text/html", "application/json", "text/x-markdown"}
)
_TEXT_SUFFIXES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
}

# pypdf logs every oddity of a malformed file at WARNING; the client gets the one error that matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def document_type(data: bytes, mime: str | None, name: str | None) -> str | None:
    """The document's real type from its bytes first, then its name and claimed type."""
    if data[:5] == b"%PDF-":
        return PDF
    suffix = PurePosixPath(name).suffix.lower() if name else ""
    if mime in TEXT_TYPES:
        return mime
    return _TEXT_SUFFIXES.get(suffix)


def document_text(data: bytes, mime: str | None, name: str | None, param: str, tally: Tally, ocr: Ocr) -> str:
    """The document as text with page markers; a MediaError for a type it cannot read."""
    kind = document_type(data, mime, name)
    label = f"document {name}" if name else "document"
    if kind == PDF:
        return pdf_text(data, label, param, tally, ocr)
    if kind is not None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MediaError(param, "This text file is not valid UTF-8.", code="invalid_file") from None
        tally.add_pages(param, 1)
        tally.modes.add("document_text")
        return f"[{label}]\n{text.strip()}\n[end of {label}]"
    raise MediaError(
        param,
        "This file type cannot be read; send a PDF or a plain-text file (txt, md, csv, json).",
        code="unsupported_file_type",
    )


def pdf_text(data: bytes, label: str, param: str, tally: Tally, ocr: Ocr) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise MediaError(param, "This PDF is encrypted with a password.", code="invalid_file")
        count = len(reader.pages)
    except MediaError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise MediaError(
            param, f"This PDF is corrupt and cannot be read ({exc}).", code="invalid_file"
        ) from None
    tally.add_pages(param, count)
    lines = [f"[{label}, {count} page{'s' if count != 1 else ''}]"]
    read: dict[tuple[int, int], str] = {}  # OCR text by image object: one image is read once
    for number, page in enumerate(reader.pages, start=1):
        tally.check_time(param)
        try:
            text = (page.extract_text() or "").strip()
        except Exception as exc:  # pypdf raises many kinds on broken content streams
            raise MediaError(
                param,
                f"Page {number} of this PDF cannot be read ({type(exc).__name__}).",
                code="invalid_file",
            ) from None
        if text:
            tally.modes.add("document_text")
            lines += [f"[page {number}]", text]
            continue
        scanned = _scanned_text(page, param, tally, ocr, read)
        lines += [f"[page {number}, read by OCR]" if scanned else f"[page {number}: no text]"]
        if scanned:
            lines.append(scanned)
    lines.append(f"[end of {label}]")
    return "\n".join(lines)


def _scanned_text(page: Any, param: str, tally: Tally, ocr: Ocr, read: dict[tuple[int, int], str]) -> str:
    """OCR of the images on a page that has no text layer (a scan). Every image the page shows is
    counted against the request's image and pixel budgets, from its declared size before it is
    decoded, each time it appears: a PDF that shows one large image hundreds of times is refused,
    not read hundreds of times. An image object already read is not read again."""
    if not ocr.available:
        return ""
    texts = []
    try:
        images = page.images
        keys = images.keys()
    except Exception:
        return ""
    for key in keys:
        tally.check_time(param)
        xobject = _xobject(page, key)
        pixels = _declared_pixels(xobject)
        if pixels is not None:
            tally.add_image(param, pixels)
        ref = getattr(xobject, "indirect_reference", None)
        identity = (ref.idnum, ref.generation) if ref is not None else None
        if identity is not None and identity in read:
            text = read[identity]
        else:
            image, _ = open_image(images[key].data, param, tally, count=pixels is None)
            budget = tally.limits.ocr_pixel_budget
            text = ocr.read(fit_budget(image, budget), param, tally.time_left(ocr.timeout_s))
            if identity is not None:
                read[identity] = text
        if text:
            tally.modes.add("ocr")
            texts.append(text)
    return "\n".join(texts)


def _xobject(page: Any, key: str | list[str]) -> Any:
    """The image XObject behind one of `page.images`' keys (through forms), None for an inline image."""
    path = [key] if isinstance(key, str) else list(key)
    if not path or path[-1].startswith("~"):
        return None
    holder = page
    try:
        for name in path:
            holder = holder["/Resources"].get_object()["/XObject"].get_object()[name].get_object()
    except (KeyError, TypeError, AttributeError, PyPdfError):
        return None
    return holder


def _declared_pixels(xobject: Any) -> int | None:
    """Width x height as the image declares them (None when it does not say)."""
    try:
        width, height = int(xobject["/Width"]), int(xobject["/Height"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(width, 0) * max(height, 0)
