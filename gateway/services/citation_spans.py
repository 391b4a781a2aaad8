"""Where an answer's citations stand: the answer's text cut into sentences (with character spans),
each citation annotation found in the sentence it marks, and a source's text cut into passages short
enough to embed (the verification pass, citation_check.py).

A sentence ends at `.`, `!` or `?` (closing quotes and brackets kept) before whitespace or the end,
or at a line break; the `[n]` markers right after its end are still its own (`... bitter. [1] Next`),
as the model is asked to write them after what it took. A run holding only markers belongs to the
sentence before it. The splitter is plain punctuation: `e.g. this` is cut after `e.g.`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MARKERS = r"(?:[ \t]*\[\d{1,2}\])*"
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)]*" + _MARKERS + r"(?=\s|$)|\n")
_MARKER = re.compile(r"\s*\[\d{1,2}\]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a text: `text[start:end]`, and its words without markers (`claim`)."""

    index: int
    start: int
    end: int
    claim: str


def sentences(text: str, first: int = 0) -> list[Sentence]:
    """The sentences of `text` in order, numbered from `first`."""
    spans: list[tuple[int, int]] = []
    at = 0
    for match in _END.finditer(text):
        _add(spans, text, at, match.end())
        at = match.end()
    _add(spans, text, at, len(text))
    return [Sentence(first + n, start, end, _claim(text[start:end])) for n, (start, end) in enumerate(spans)]


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    if not piece.strip():
        return
    start += len(piece) - len(piece.lstrip())
    end -= len(piece) - len(piece.rstrip())
    if not _claim(text[start:end]) and spans:  # only markers: the sentence before cites them
        spans[-1] = (spans[-1][0], end)
        return
    spans.append((start, end))


def _claim(piece: str) -> str:
    return _SPACE.sub(" ", _MARKER.sub("", piece)).strip()


def position(annotation: Mapping[str, Any]) -> int | None:
    """Where a citation stands in its text: a file citation's `index`, a URL citation's start."""
    kind = annotation.get("type")
    at = annotation.get("index") if kind == "file_citation" else annotation.get("start_index")
    return at if isinstance(at, int) and kind in ("file_citation", "url_citation") else None


def source_key(annotation: Mapping[str, Any]) -> str | None:
    """The source a citation names, as the search tools key their passages (`file:<id>`, `url:<url>`)."""
    kind = annotation.get("type")
    if kind == "file_citation" and isinstance(annotation.get("file_id"), str):
        return "file:" + annotation["file_id"]
    if kind == "url_citation" and isinstance(annotation.get("url"), str):
        return "url:" + annotation["url"]
    return None


def sentence_at(found: list[Sentence], at: int) -> Sentence | None:
    """The sentence holding position `at` (None past the last one: a source cited at the text's end,
    which the model never marked, cites no sentence)."""
    for sentence in found:
        if sentence.start <= at < sentence.end:
            return sentence
    return None


def passages(text: str, chars: int) -> list[str]:
    """A source's text as consecutive runs of its sentences, each at most `chars` long (a longer
    sentence cut), so that each is embedded whole and a sentence is compared with the run it
    came from rather than with a whole page."""
    runs: list[str] = []
    current = ""
    for sentence in sentences(text):
        claim = sentence.claim
        for cut in range(0, len(claim), chars):
            piece = claim[cut : cut + chars]
            if current and len(current) + 1 + len(piece) > chars:
                runs.append(current)
                current = ""
            current = f"{current} {piece}" if current else piece
    if current:
        runs.append(current)
    return runs
