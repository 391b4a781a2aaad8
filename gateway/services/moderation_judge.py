"""The optional LLM judge: any model the gateway serves, asked with a Llama-Guard-style prompt
(the policy's categories listed, the conversation, "safe or unsafe, and which categories") and
answering through structured outputs (a JSON schema vLLM enforces while decoding), so its answer
always parses. Off unless the operator names a model (`moderation_judge_model`) and a tenant's
policy asks for it (`judge: true`). Its verdict scores the categories it names 1.0.

The judge's call is the gateway's own (not charged to the caller's key): an operator's cost."""

from __future__ import annotations

from typing import Any

import orjson

from adapters.moderation.categories import CATEGORIES, Scores, empty_scores
from gateway.errors import APIError
from gateway.observability import get_logger
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

_log = get_logger("tantra.moderation")
PATH = "/v1/chat/completions"

_PROMPT = """Task: Check if there is unsafe content in the 'User' message below according to our \
safety policy with the categories listed.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

User: {text}

<END CONVERSATION>

Provide your safety assessment for the User message above as JSON: "verdict" is "safe" or \
"unsafe"; "categories" lists the codes (S1, S2, ...) of the violated categories, empty if safe."""

# Category codes in Llama Guard's style: S1 .. S13, in OpenAI's order.
CODES = {f"S{number}": name for number, name in enumerate(CATEGORIES, start=1)}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["safe", "unsafe"]},
        "categories": {"type": "array", "items": {"type": "string", "enum": list(CODES)}, "maxItems": 13},
    },
    "required": ["verdict", "categories"],
    "additionalProperties": False,
}
# The judged text is cut to this many characters (the judge's context is the model's).
_MAX_CHARS = 4000


def judge_request(model: str, text: str) -> dict[str, Any]:
    categories = "\n".join(f"{code}: {name}." for code, name in CODES.items())
    prompt = _PROMPT.format(categories=categories, text=text[:_MAX_CHARS])
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "moderation_verdict", "schema": SCHEMA, "strict": True},
        },
        "temperature": 0,
        # The verdict is ~40 tokens; a judge that pads its JSON with whitespace is cut here and
        # judges nothing (parse_verdict).
        "max_tokens": 256,
    }


def parse_verdict(answer: bytes) -> Scores:
    """The judge's chat answer as scores: each named category 1.0 when the verdict is unsafe. An
    answer that does not parse (a provider without structured outputs) judges nothing (all 0)."""
    scores = empty_scores()
    try:
        content = orjson.loads(answer)["choices"][0]["message"]["content"]
        verdict = orjson.loads(content)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        _log.warning("moderation_judge_unparsed")
        return scores
    if not isinstance(verdict, dict) or verdict.get("verdict") != "unsafe":
        return scores
    for code in verdict.get("categories") or ():
        if isinstance(code, str) and code in CODES:
            scores[CODES[code]] = 1.0
    return scores


class Judge:
    def __init__(self, dispatcher: Dispatcher, model: str) -> None:
        self._dispatcher = dispatcher
        self.model = model

    async def scores(self, text: str) -> Scores:
        payload = judge_request(self.model, text)
        request = UpstreamRequest(PATH, orjson.dumps(payload), payload, self.model, {})
        try:
            answer, _, _ = await self._dispatcher.answer(request)
        except APIError as exc:
            # A judge that cannot answer does not fail the request: the classifiers still judged it.
            _log.warning("moderation_judge_failed", error=exc.message)
            return empty_scores()
        return parse_verdict(answer)
