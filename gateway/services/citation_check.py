"""The citation verification pass (docs/orchestration.md, "Citation verification"): an answer that
used file or web search is cut into sentences, each citation annotation is found in the sentence it
marks (citation_spans.py), and each (sentence, cited source) is scored against the source's text
the search gave the model:

- `embedding`: the cosine between the sentence and the source's best-matching passage (a run of its
  sentences), over a served embedding model; supported at or above the threshold. One embedding
  call per answer: every sentence and every passage in one batch.
- `judge`: an entailment prompt to a served model, answered as strict JSON `{"supported": bool}`
  through structured outputs (score 1 or 0); one call per (sentence, source), four at a time. A
  judge whose answer does not parse leaves that citation unjudged (`supported: null`).

Each checked annotation gets `tantra: {"sentence", "start", "end", "supported", "score"}` and the
response `tantra.citations: {"method", "checked", "supported", "unsupported": [sentence indices]}`;
a sentence is supported when one of its citations is. The calls are the gateway's own (not charged
to the caller's key, as the moderation judge's): an operator's cost. A pass that fails (the model
not served) leaves the answer as it was, with the summary's `error`."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import orjson

from gateway.errors import APIError
from gateway.observability import get_logger
from gateway.protocol.responses_api import TantraResponseOptions
from gateway.services.citation_spans import Sentence, passages, position, sentence_at, sentences, source_key
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

Method = Literal["embedding", "judge"]
Verdict = tuple[bool | None, float | None]
_log = get_logger("tantra.citations")
# Characters of one text embedded (MiniLM reads 256 tokens) and of a source the judge reads.
_EMBED_CHARS = 400
_JUDGE_CHARS = 3000
_JUDGES_AT_ONCE = 4
_VERDICT: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
    "additionalProperties": False,
}
_JUDGE_PROMPT = (
    "Does the SOURCE state or directly imply the CLAIM? Answer with JSON: "
    '{{"supported": true}} or {{"supported": false}}.\n\nSOURCE:\n{source}\n\nCLAIM:\n{claim}'
)


class Searched(Protocol):
    """A search tool's run (file_search.py, web_search.py): the texts the model was given, by the
    key of the citations naming them (citation_spans.source_key)."""

    @property
    def sources(self) -> dict[str, list[str]]: ...


@dataclass(frozen=True)
class Options:
    default: bool
    method: Method
    embedding_model: str
    threshold: float
    judge_model: str


class CitationChecks:
    """The deployment's verification pass; `prepare` one request's."""

    def __init__(self, dispatcher: Dispatcher, options: Options) -> None:
        self._dispatcher = dispatcher
        self.options = options

    def prepare(
        self, asked: TantraResponseOptions | None, searched: Sequence[Searched], model: str
    ) -> Verification | None:
        """The pass for a response whose search tools ran (`searched`); None when it is not asked
        for or nothing was searched."""
        sources = {key: texts for ran in searched for key, texts in ran.sources.items()}
        wanted = asked.verify_citations if asked and asked.verify_citations is not None else None
        if not (self.options.default if wanted is None else wanted) or not sources:
            return None
        method = (asked.citation_method if asked else None) or self.options.method
        return Verification(self, method, sources, model)

    async def answer(self, path: str, payload: dict[str, Any], model: str) -> dict[str, Any]:
        request = UpstreamRequest(path, orjson.dumps(payload), payload, model, {})
        body, _, _ = await self._dispatcher.answer(request)
        answer = orjson.loads(body)
        return answer if isinstance(answer, dict) else {}


@dataclass(frozen=True)
class _Claim:
    sentence: Sentence
    key: str
    annotation: dict[str, Any]


class Verification:
    """One response's pass (see the module's words)."""

    def __init__(self, checks: CitationChecks, method: Method, sources: dict[str, list[str]], model: str):
        self._checks, self.method, self._sources, self._model = checks, method, sources, model

    async def apply(self, response: dict[str, Any]) -> dict[str, Any]:
        """A copy of `response` with its citations scored and the summary."""
        out = copy.deepcopy(response)
        claims = list(self._claims(out))
        pairs = sorted({(c.sentence.index, c.key): c.sentence.claim for c in claims}.items())
        summary: dict[str, Any] = {"method": self.method}
        try:
            verdicts = await (self._embedded(pairs) if self.method == "embedding" else self._judged(pairs))
        except (APIError, KeyError, TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, APIError) else type(exc).__name__
            _log.warning("citations_verify_failed", method=self.method, error=message)
            verdicts, summary["error"] = {}, message
        for claim in claims:
            supported, score = verdicts.get((claim.sentence.index, claim.key), (None, None))
            claim.annotation["tantra"] = {
                "sentence": claim.sentence.index,
                "start": claim.sentence.start,
                "end": claim.sentence.end,
                "supported": supported,
                "score": score,
            }
        summary.update(_summary(claims, verdicts))
        tantra = out.get("tantra")
        out["tantra"] = {**(tantra if isinstance(tantra, dict) else {}), "citations": summary}
        return out

    def _claims(self, response: dict[str, Any]) -> Iterator[_Claim]:
        """Each citation of a searched source in the sentence it marks, sentences numbered across
        the response's output texts in order."""
        first = 0
        for item in response.get("output") or []:
            if not isinstance(item, dict) or item.get("type") != "message":
                continue
            for part in item.get("content") or []:
                if not isinstance(part, dict) or part.get("type") != "output_text":
                    continue
                found = sentences(str(part.get("text") or ""), first)
                first += len(found)
                for annotation in part.get("annotations") or []:
                    at, key = position(annotation), source_key(annotation)
                    sentence = sentence_at(found, at) if at is not None else None
                    if sentence is not None and key in self._sources:
                        yield _Claim(sentence, key, annotation)

    async def _embedded(self, pairs: list[tuple[tuple[int, str], str]]) -> dict[tuple[int, str], Verdict]:
        if not pairs:
            return {}
        options = self._checks.options
        claims = [claim[:_EMBED_CHARS] for _, claim in pairs]
        runs = {
            key: [run for text in self._sources[key] for run in passages(text, _EMBED_CHARS)]
            for key in {key for (_, key), _ in pairs}
        }
        texts = claims + [run for key_runs in runs.values() for run in key_runs]
        payload = {"model": options.embedding_model, "input": texts}
        answer = await self._checks.answer("/v1/embeddings", payload, options.embedding_model)
        rows = sorted(answer["data"], key=lambda row: row["index"])
        vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise ValueError("wrong number of embeddings")
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        at, spans = len(claims), {}
        for key, key_runs in runs.items():
            spans[key] = (at, at + len(key_runs))
            at += len(key_runs)
        verdicts: dict[tuple[int, str], Verdict] = {}
        for n, ((sentence, key), _) in enumerate(pairs):
            start, end = spans[key]
            score = float(np.max(vectors[start:end] @ vectors[n])) if end > start else 0.0
            verdicts[(sentence, key)] = (score >= options.threshold, round(score, 4))
        return verdicts

    async def _judged(self, pairs: list[tuple[tuple[int, str], str]]) -> dict[tuple[int, str], Verdict]:
        model = self._checks.options.judge_model or self._model
        gate = asyncio.Semaphore(_JUDGES_AT_ONCE)

        async def judge(key: str, claim: str) -> Verdict:
            source = "\n\n".join(self._sources[key])[:_JUDGE_CHARS]
            async with gate:
                answer = await self._checks.answer(PATH_CHAT, judge_request(model, source, claim), model)
            return parse_verdict(answer)

        found = await asyncio.gather(*(judge(key, claim) for (_, key), claim in pairs))
        return {pair: verdict for (pair, _), verdict in zip(pairs, found, strict=True)}


PATH_CHAT = "/v1/chat/completions"


def judge_request(model: str, source: str, claim: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": _JUDGE_PROMPT.format(source=source, claim=claim)}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "citation_verdict", "schema": _VERDICT, "strict": True},
        },
        "temperature": 0,
        # The verdict is ~7 tokens; a judge padding its JSON with whitespace is cut here, unjudged.
        "max_tokens": 32,
    }


def parse_verdict(answer: dict[str, Any]) -> Verdict:
    """The judge's chat answer as (supported, score); (None, None) when it does not parse."""
    try:
        verdict = orjson.loads(answer["choices"][0]["message"]["content"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None, None
    supported = verdict.get("supported") if isinstance(verdict, dict) else None
    return (supported, 1.0 if supported else 0.0) if isinstance(supported, bool) else (None, None)


def _summary(claims: list[_Claim], verdicts: dict[tuple[int, str], Verdict]) -> dict[str, Any]:
    """Per sentence: supported when one of its citations is, unsupported when all judged ones are not."""
    judged: dict[int, bool] = {}
    for claim in claims:
        supported = verdicts.get((claim.sentence.index, claim.key), (None, None))[0]
        if supported is not None:
            judged[claim.sentence.index] = judged.get(claim.sentence.index, False) or supported
    return {
        "checked": len(judged),
        "supported": sum(judged.values()),
        "unsupported": sorted(n for n, ok in judged.items() if not ok),
    }
