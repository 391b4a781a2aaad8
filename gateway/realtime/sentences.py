"""Cutting streamed text into sentences, so speech can start before the answer is complete."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or their CJK forms) followed by space, or at a line break.
_END = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f])[\"')\]]*\s+|\n+")
_MIN_CHARS = 12  # "Dr. " or "e.g. " alone is not worth a speech request of its own


class SentenceSplitter:
    """Feed text deltas; get back each sentence once it is complete, then `flush` the rest."""

    def __init__(self, min_chars: int = _MIN_CHARS) -> None:
        self._held = ""
        self._min = min_chars

    def feed(self, delta: str) -> list[str]:
        self._held += delta
        out: list[str] = []
        start = 0
        for match in _END.finditer(self._held):
            candidate = self._held[start : match.end()].strip()
            if len(candidate) >= self._min:
                out.append(candidate)
                start = match.end()
        self._held = self._held[start:]
        return out

    def flush(self) -> list[str]:
        rest, self._held = self._held.strip(), ""
        return [rest] if rest else []
