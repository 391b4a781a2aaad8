"""Languages of speech: the codes voices are listed under (ISO 639-1 where there is one, as `language`
is given to OpenAI's endpoints) and the language of a text, detected with lingua.

lingua is loaded the first time a text's language is asked for, restricted to the languages some
installed voice speaks, in its low-accuracy mode by default (about 1 s and 100 MB; the accurate mode
takes some 20 s and 1 GB for all its languages): a gateway that never speaks never loads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

_log = logging.getLogger("tantra.tts")

# Voice catalogues' codes that are not ISO 639-1 where lingua's (and OpenAI's) are.
_ALIASES = {"cmn": "zh", "yue": "zh", "nb": "nb", "no": "nb", "iw": "he", "in": "id"}


def language_code(tag: str) -> str:
    """The language of a code or tag: `fr-FR`, `fr_fr` and `FR` are `fr`; `cmn` is `zh`."""
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return _ALIASES.get(primary, primary)


def language_region(tag: str) -> str | None:
    """A tag's regional form as voice catalogues name regional voices (`pt-BR` and `pt_br` are
    `pt-br`, eSpeak NG's Brazilian voice); None for a bare language (`pt`)."""
    normal = tag.strip().replace("_", "-").lower()
    return normal if "-" in normal else None


class LanguageDetector:
    """The language of a text among a fixed set of candidates, or None when lingua is not sure
    (a text too short, or between two close languages): the caller then keeps the voice it had.

    The fast mode's guesses on a short text are often wrong (`Hello there.` as Latin, a short
    English question as German) but then never confident, while a text in a language it knows
    scores near 1: only a language at `min_confidence` or more is taken. The accurate mode's
    confidences are spread thinner; there lingua's own minimum distance between the first two
    decides."""

    def __init__(
        self, *, accurate: bool = False, min_confidence: float = 0.9, min_distance: float = 0.1
    ) -> None:
        self._accurate = accurate
        self._min_confidence = min_confidence
        self._min_distance = min_distance
        self._built: tuple[frozenset[str], Any] | None = None
        self._lock = threading.Lock()

    def detect(self, text: str, among: Iterable[str]) -> str | None:
        """Blocking (the first call loads lingua's models): call it in a worker thread."""
        detector = self._detector(frozenset(among))
        if detector is None:
            return None
        if self._accurate:
            found = detector.detect_language_of(text)
        else:
            ranked = detector.compute_language_confidence_values(text)
            found = ranked[0].language if ranked and ranked[0].value >= self._min_confidence else None
        return None if found is None else str(found.iso_code_639_1.name).lower()

    def _detector(self, among: frozenset[str]) -> Any:
        with self._lock:
            if self._built is None or self._built[0] != among:
                self._built = (among, self._build(among))
            return self._built[1]

    def _build(self, among: frozenset[str]) -> Any:
        try:
            from lingua import IsoCode639_1, LanguageDetectorBuilder
        except ImportError:
            _log.warning("lingua is not installed (the `languages` extra): texts' languages are not detected")
            return None

        codes = [code for code in (getattr(IsoCode639_1, c.upper(), None) for c in sorted(among)) if code]
        if len(codes) < 2:
            return None  # one language (or none) to choose from: nothing to detect
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        if self._accurate:
            builder = builder.with_minimum_relative_distance(self._min_distance)
        else:
            builder = builder.with_low_accuracy_mode()
        return builder.build()
