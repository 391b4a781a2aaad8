"""A store file's text and its chunks (docs/memory.md, "Vector stores and file search").

Text: PDFs through the document adapter (adapters/documents.py: pypdf, page markers, OCR of scanned
pages where tesseract is installed), HTML with its tags, scripts and styles dropped (the standard
library's HTMLParser: no dependency for a few lines), other text files as UTF-8.

Chunks: windows of `size` tokens of the embedding model's own tokenizer, each starting `size -
overlap` tokens after the one before (OpenAI's static strategy; `auto` is 800 and 400). The tokens
come from the embedding engine's /tokenize with their strings (vector_core.py); `token_ends` finds
where each one ends in the text, so a chunk is the file's own text (its case, accents and spacing,
which an uncased tokenizer's /detokenize would lose) cut at the model's token boundaries.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import PurePosixPath

from adapters.documents import PDF, document_text, document_type
from adapters.errors import MediaError
from adapters.limits import MediaLimits, Tally
from adapters.ocr import Ocr

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".csv", ".json", ".rst", ".py", ".js", ".ts", ".tex"})


class Unreadable(Exception):
    """The file cannot be made into text: OpenAI's `last_error.code` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def file_text(data: bytes, content_type: str | None, filename: str) -> str:
    """The file as plain text (CPU work: run it in a thread)."""
    suffix = PurePosixPath(filename).suffix.lower()
    if document_type(data, content_type, filename) == PDF:
        try:
            return document_text(data, PDF, filename, "file_id", Tally(MediaLimits(max_pages=10_000)), Ocr())
        except MediaError as exc:
            raise Unreadable("invalid_file", exc.message) from None
    if content_type in HTML_TYPES or suffix in _HTML_SUFFIXES:
        return html_text(_decoded(data))
    if (
        suffix in _TEXT_SUFFIXES
        or (content_type or "").startswith("text/")
        or content_type == "application/json"
    ):
        return _decoded(data)
    if not suffix and b"\x00" not in data[:4096]:
        return _decoded(data)
    raise Unreadable(
        "unsupported_file",
        f"Files of type '{suffix or content_type}' cannot be searched; send text, markdown, HTML or PDF.",
    )


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable("invalid_file", "This text file is not valid UTF-8.") from None


class _Text(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head", "noscript", "template"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


# How tokenizers mark a token's leading space or a continuation: WordPiece's "##", SentencePiece's
# "▁", byte-level BPE's "Ġ" (space) and "Ċ" (newline).
_MARKS = str.maketrans({"Ġ": " ", "▁": " ", "Ċ": "\n"})


def token_ends(text: str, token_strs: list[str]) -> list[int]:
    """Where each token ends in `text`: each token string is looked for (case-insensitively) just
    after the previous one; a token not found there (an unknown token, a byte of a multi-byte
    character, an accent the tokenizer stripped) ends where the previous one did, so its text falls
    to the next token found, and no text is ever lost between chunks."""
    lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    cursor, ends = 0, []
    for raw in token_strs:
        piece = raw.removeprefix("##").translate(_MARKS).strip().lower()
        if piece and not (piece.startswith("[") and piece.endswith("]")):
            found = lowered.find(piece, cursor, cursor + len(piece) + 64)
            if found >= 0:
                cursor = found + len(piece)
        ends.append(cursor)
    return ends


def windows(count: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """The [start, end) token ranges of the chunks of `count` tokens: `size` long, each after the
    first starting `overlap` tokens before the previous one ends; the last one ends at `count`."""
    if count <= 0:
        return []
    step = max(1, size - overlap)
    ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + size, count)
        ranges.append((start, end))
        if end >= count:
            return ranges
        start += step
