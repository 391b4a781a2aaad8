"""Text cut into sentences, the unit speech is synthesised in: the first one can be heard while the
rest is still being made. Works on a whole text or on text that arrives in pieces (an LLM's stream)."""

from __future__ import annotations

import re

# Words whose period does not end a sentence ("Dr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "approx"),
        *("no", "fig", "mt", "ft", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct"),
        *("nov", "dec"),
    }
)
_CLOSERS = "\"')]}\u00bb\u201d\u2019"  # and the closing guillemet and curly quotes
_CLOSE = f"[{re.escape(_CLOSERS)}]*"
# Terminal punctuation, then any closing quotes or brackets, then whitespace; CJK full stops need
# none; a blank line ends a paragraph.
_END = re.compile(rf"[.!?\u2026]+{_CLOSE}(?=\s)|[\u3002\uff01\uff1f]+{_CLOSE}|\n\s*\n")
# Where an over-long sentence may be cut, best first.
_SOFT_BREAKS = (re.compile("[;:,\u2014\u2013]\\s"), re.compile(r"\s"))


class SentenceSplitter:
    """Feed text as it arrives; complete sentences come out as soon as they are known to be complete.

    A period at the very end of what has arrived is not yet a boundary (it may be "3." of "3.14" or
    the first of "..."); it becomes one when whitespace follows, or at `flush()`. A sentence longer
    than `max_chars` is cut at a comma or a space so that speech starts without waiting for its end.
    """

    def __init__(self, *, max_chars: int = 300) -> None:
        self._max_chars = max_chars
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """The sentences that `text` completes (possibly none)."""
        self._buffer += text
        out: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            if _is_abbreviation(self._buffer, match):
                continue
            out.extend(self._cut(self._buffer[start : match.end()]))
            start = match.end()
        self._buffer = self._buffer[start:]
        while len(self._buffer) > self._max_chars:
            head, self._buffer = _soft_cut(self._buffer, self._max_chars)
            out.extend(_clean(head))
        return out

    def flush(self) -> list[str]:
        """Whatever is left, as the last sentence(s): call it when the text has ended."""
        rest, self._buffer = self._buffer, ""
        return self._cut(rest)

    def _cut(self, sentence: str) -> list[str]:
        pieces: list[str] = []
        while len(sentence) > self._max_chars:
            head, sentence = _soft_cut(sentence, self._max_chars)
            pieces.extend(_clean(head))
        pieces.extend(_clean(sentence))
        return pieces


def split_sentences(text: str, *, max_chars: int = 300) -> list[str]:
    """A whole text's sentences, in order, stripped; empty ones dropped."""
    splitter = SentenceSplitter(max_chars=max_chars)
    return splitter.feed(text) + splitter.flush()


def _is_abbreviation(text: str, match: re.Match[str]) -> bool:
    if match.group() != ".":
        return False
    word = re.search(r"(\S+)$", text[: match.start()])
    if word is None:
        return False
    token = word.group(1).lstrip("(\"'").lower()
    # Initials ("J. R. R. Tolkien") and listed abbreviations; a number's period ("in 1999.") ends.
    return (len(token) == 1 and token.isalpha()) or token in _ABBREVIATIONS


def _soft_cut(text: str, limit: int) -> tuple[str, str]:
    window = text[:limit]
    for pattern in _SOFT_BREAKS:
        breaks = [m.end() for m in pattern.finditer(window)]
        if breaks and breaks[-1] > limit // 3:
            return text[: breaks[-1]], text[breaks[-1] :]
    return text[:limit], text[limit:]


def _clean(sentence: str) -> list[str]:
    stripped = " ".join(sentence.split())
    return [stripped] if stripped and any(ch.isalnum() for ch in stripped) else []
