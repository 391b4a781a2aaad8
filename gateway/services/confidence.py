"""Chat's confidence extension (docs/orchestration.md, "Confidence"): a request with
`tantra: {"confidence": true}` has the engine return its tokens' log-probabilities (and the top
alternatives at each step), and each choice of the answer carries `tantra_confidence`:

- `mean_token_prob`: the mean of the generated tokens' probabilities, `min_token_prob` the least
  of them (the one step the model was least sure of), `mean_logprob` the mean log-probability;
- `mean_entropy`: the mean, over the tokens, of the entropy (nats) of the top-k alternatives'
  distribution renormalised (k: `TANTRA_CONFIDENCE_TOP_LOGPROBS`, or the client's `top_logprobs`
  when larger);
- `agreement` (with n > 1): the share of the n samples whose answer is this one (whitespace and
  case aside; self-consistency: the share of the votes for its extracted answer);
- `score`: one number to act on, the agreement when there is one, else exp(mean_logprob) (the
  geometric mean of the token probabilities). The bench measures its calibration.

What the client did not ask for is taken out again: no `logprobs` unless it asked, and no more
`top_logprobs` per token than it asked (vLLM lists them in rank order, so the first ones are what it
would have answered). A stream carries `tantra_confidence` (a list, one entry per choice, with its
`index`) on its last chunk: the usage chunk when the client asked for usage, else each choice's
terminal chunk (where the relay carries the usage chunk's other fields).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.protocol import ChatCompletionRequest

__all__ = [
    "FIELD",
    "ConfidenceAsk",
    "StreamConfidence",
    "agreement",
    "complete_json",
    "measure",
    "without_extensions",
]

FIELD = "tantra_confidence"
_SPACES = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class ConfidenceAsk:
    """What the client asked of logprobs itself, and so what its answer keeps."""

    logprobs: bool
    # The client's own `top_logprobs` (0: none; -1: the whole vocabulary, vLLM's extension).
    top_logprobs: int

    @classmethod
    def of(cls, parsed: object) -> ConfidenceAsk | None:
        """The ask of a chat request with `tantra.confidence` on; None otherwise."""
        if not isinstance(parsed, ChatCompletionRequest) or parsed.tantra is None:
            return None
        if not parsed.tantra.confidence:
            return None
        return cls(bool(parsed.logprobs), parsed.top_logprobs or 0)

    def fields(self, top_k: int) -> dict[str, Any]:
        """The fields the engine is sent: logprobs, and at least `top_k` alternatives per token."""
        top = -1 if self.top_logprobs == -1 else max(top_k, self.top_logprobs)
        return {"logprobs": True, "top_logprobs": top}

    def trimmed(self, logprobs: Any) -> Any:
        """A choice's `logprobs` as the client asked for them (None when it did not)."""
        if not self.logprobs:
            return None
        if self.top_logprobs == -1 or not isinstance(logprobs, dict):
            return logprobs
        content = logprobs.get("content")
        if isinstance(content, list):
            for entry in content:
                if isinstance(entry, dict) and isinstance(entry.get("top_logprobs"), list):
                    entry["top_logprobs"] = entry["top_logprobs"][: self.top_logprobs]
        return logprobs


def without_extensions(body: bytes, payload: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The body and payload without `tantra` (the gateway's extensions, never sent upstream)."""
    if "tantra" not in payload:
        return body, payload
    payload = {key: value for key, value in payload.items() if key != "tantra"}
    return orjson.dumps(payload), payload


class _Tally:
    """One choice's tokens, as they come (a JSON answer's at once, a stream's chunk by chunk)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.sum_prob = 0.0
        self.sum_logprob = 0.0
        self.min_prob = 1.0
        self.sum_entropy = 0.0
        self.text: list[str] = []

    def add(self, logprobs: Any) -> None:
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        for entry in content if isinstance(content, list) else ():
            if not isinstance(entry, dict) or not isinstance(entry.get("logprob"), int | float):
                continue
            logprob = float(entry["logprob"])
            prob = math.exp(logprob)
            self.tokens += 1
            self.sum_prob += prob
            self.sum_logprob += logprob
            self.min_prob = min(self.min_prob, prob)
            self.sum_entropy += _entropy(entry.get("top_logprobs"))

    def result(self) -> dict[str, Any]:
        if not self.tokens:
            return {"tokens": 0, "mean_token_prob": None, "min_token_prob": None, "mean_logprob": None,
                    "mean_entropy": None, "score": None}  # fmt: skip
        mean_logprob = self.sum_logprob / self.tokens
        return {
            "tokens": self.tokens,
            "mean_token_prob": round(self.sum_prob / self.tokens, 6),
            "min_token_prob": round(self.min_prob, 6),
            "mean_logprob": round(mean_logprob, 6),
            "mean_entropy": round(self.sum_entropy / self.tokens, 6),
            "score": round(math.exp(mean_logprob), 6),
        }


def _entropy(top: Any) -> float:
    """The entropy (nats) of the top alternatives' probabilities, renormalised to sum to one."""
    if not isinstance(top, list):
        return 0.0
    probs = [math.exp(float(item["logprob"])) for item in top if isinstance(item, dict) and "logprob" in item]
    total = sum(probs)
    if total <= 0:
        return 0.0
    return -sum(p / total * math.log(p / total) for p in probs if p > 0)


def measure(logprobs: Any) -> dict[str, Any]:
    """The confidence of one choice from its `logprobs` object (OpenAI's chat shape)."""
    tally = _Tally()
    tally.add(logprobs)
    return tally.result()


def normalised(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def agreement(answers: Iterable[str]) -> list[float]:
    """For each answer, the share of all the answers equal to it (as `normalised` reads them)."""
    keys = [normalised(answer) for answer in answers]
    counts = Counter(keys)
    return [counts[key] / len(keys) for key in keys]


def _with_agreement(results: list[dict[str, Any]], texts: list[str]) -> None:
    if len(results) < 2:
        return
    for result, share in zip(results, agreement(texts), strict=True):
        result["agreement"] = round(share, 6)
        result["score"] = result["agreement"]


def _message_text(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def complete_json(answer: bytes, ask: ConfidenceAsk) -> bytes:
    """A chat JSON answer with `tantra_confidence` on each choice and its logprobs as asked."""
    try:
        body = orjson.loads(answer)
        choices = [choice for choice in body["choices"] if isinstance(choice, dict)]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return answer
    results = [measure(choice.get("logprobs")) for choice in choices]
    _with_agreement(results, [_message_text(choice) for choice in choices])
    for choice, result in zip(choices, results, strict=True):
        choice[FIELD] = result
        choice["logprobs"] = ask.trimmed(choice.get("logprobs"))
    return orjson.dumps(body)


class StreamConfidence:
    """A stream's confidence: each chunk's logprobs tallied (and taken out as the client asked),
    the result added to the usage chunk (the gateway always asks the engine for usage)."""

    def __init__(self, ask: ConfidenceAsk) -> None:
        self._ask = ask
        self._tallies: dict[int, _Tally] = {}

    def see(self, body: dict[str, Any]) -> bool:
        """Tally this chunk's tokens; True when the chunk changed (its logprobs trimmed)."""
        changed = False
        for choice in body.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            tally = self._tallies.setdefault(int(choice.get("index") or 0), _Tally())
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                tally.text.append(content)
            logprobs = choice.get("logprobs")
            if logprobs is not None:
                tally.add(logprobs)
                choice["logprobs"] = self._ask.trimmed(logprobs)
                changed = True
        return changed

    def finish(self, body: dict[str, Any]) -> bool:
        """Add `tantra_confidence` to the usage chunk `body`; True (it changed)."""
        indexes = sorted(self._tallies)
        results = [{"index": index, **self._tallies[index].result()} for index in indexes]
        _with_agreement(results, ["".join(self._tallies[index].text) for index in indexes])
        body[FIELD] = results
        return True
