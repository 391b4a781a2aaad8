"""Reasoning in chat answers (docs/orchestration.md, "Reasoning"): the reasoning an engine's
reasoning parser split from the answer reaches the client under both the names clients read, and
its tokens are counted in `usage` when the upstream did not count them.

vLLM 0.32 writes the reasoning as `reasoning` (in `message` and in stream deltas); DeepSeek's API,
the clients written for it and vLLM before 0.10 name it `reasoning_content`. The gateway passes
the text through untouched and sets whichever of the two is missing, so a client of either kind
reads it. `usage.completion_tokens_details.reasoning_tokens` (OpenAI's field) comes from vLLM when
its parser counts (vLLM counts with the parser's `count_reasoning_tokens`, zero for the parsers
that do not implement it); a JSON answer whose reasoning was not counted is counted with the
answering upstream's tokenizer (vLLM's /tokenize), a stream's by its reasoning events (vLLM
streams one event per token, as the relay counts completion tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.upstreams.pool import UpstreamPool

__all__ = [
    "ReasoningCounter",
    "StreamReasoning",
    "alias_reasoning",
    "reasoning_text",
    "responses_thinking_fields",
    "thinking_fields",
]

NAMES = ("reasoning", "reasoning_content")
# The gateway's own estimate when no tokenizer answers (gateway/limits/estimate.py: four characters).
_CHARS_PER_TOKEN = 4
_COUNT_TIMEOUT_S = 2.0


def alias_reasoning(container: Any) -> bool:
    """Set the missing one of `reasoning` and `reasoning_content` (a message or a delta) from the
    other; True when `container` changed."""
    if not isinstance(container, dict):
        return False
    vllm, deepseek = container.get("reasoning"), container.get("reasoning_content")
    if isinstance(vllm, str) and deepseek is None:
        container["reasoning_content"] = vllm
        return True
    if isinstance(deepseek, str) and vllm is None:
        container["reasoning"] = deepseek
        return True
    return False


def reasoning_text(container: Any) -> str:
    if not isinstance(container, dict):
        return ""
    for name in NAMES:
        text = container.get(name)
        if isinstance(text, str) and text:
            return text
    return ""


# The efforts that mean "do not think" (OpenAI's `minimal` is the least reasoning it offers).
_NO_THINKING = frozenset({"none", "minimal"})


def thinking_fields(payload: dict[str, Any], budgets: Mapping[str, int] | None) -> dict[str, Any]:
    """What a chat request's `reasoning_effort` adds to its body for a model whose route sets
    `reasoning_budgets`: vLLM's `thinking_token_budget`, and for `none` and `minimal` the chat
    template's `enable_thinking: false` (Qwen3's switch). What the client set itself stands."""
    effort = payload.get("reasoning_effort")
    if not budgets or not isinstance(effort, str) or effort not in budgets:
        return {}
    fields: dict[str, Any] = {}
    # Not with a grammar: vLLM 0.32's engine died (its worker, in native code) on a budget forcing
    # `</think>` into a request under structured outputs; the client's own budget goes as sent.
    if payload.get("thinking_token_budget") is None and not _constrained(payload):
        fields["thinking_token_budget"] = budgets[effort]
    kwargs = payload.get("chat_template_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if effort in _NO_THINKING and "enable_thinking" not in kwargs:
        fields["chat_template_kwargs"] = {**kwargs, "enable_thinking": False}
    return fields


def _constrained(payload: dict[str, Any]) -> bool:
    """Whether the request has vLLM constrain its output with a grammar."""
    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    return (
        payload.get("structured_outputs") is not None
        or kind not in (None, "text")
        or any(key.startswith("guided_") for key in payload)
    )


def responses_thinking_fields(payload: dict[str, Any], budgets: Mapping[str, int] | None) -> dict[str, Any]:
    """`thinking_fields` for a Responses request (`reasoning.effort`): vLLM 0.32's Responses API
    has no `thinking_token_budget`, so only the template's switch applies."""
    reasoning = payload.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    asked = {"reasoning_effort": effort, "chat_template_kwargs": payload.get("chat_template_kwargs")}
    fields = thinking_fields({**asked, "thinking_token_budget": 0}, budgets)
    return fields


def _counted(usage: Any) -> bool:
    """Whether `usage` already says how many reasoning tokens there were (a positive count)."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    count = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return isinstance(count, int) and count > 0


def _fill(usage: dict[str, Any], tokens: int) -> None:
    details = usage.get("completion_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["reasoning_tokens"] = tokens
    usage["completion_tokens_details"] = details


class ReasoningCounter:
    """Completes a chat JSON answer's reasoning: both names, and its tokens in `usage`."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool

    async def complete(self, answer: bytes, upstream: str, model: str) -> bytes:
        """`answer` with its reasoning under both names and counted; as it came when it has none."""
        if b'"reasoning' not in answer:
            return answer
        try:
            body = orjson.loads(answer)
            choices = body["choices"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return answer
        messages = [choice.get("message") for choice in choices if isinstance(choice, dict)]
        changed = [alias_reasoning(message) for message in messages]
        texts = [text for text in map(reasoning_text, messages) if text]
        usage = body.get("usage")
        if texts and isinstance(usage, dict) and not _counted(usage):
            _fill(usage, sum([await self._count(upstream, model, text) for text in texts]))
        elif not any(changed):
            return answer
        return orjson.dumps(body)

    async def _count(self, upstream: str, model: str, text: str) -> int:
        answering = self._pool.upstreams().get(upstream)
        if answering is not None and answering.capabilities.counts_tokens:
            counted = await answering.count_tokens(model, text, timeout_s=_COUNT_TIMEOUT_S)
            if counted is not None:
                return counted
        return -(-len(text) // _CHARS_PER_TOKEN)


class StreamReasoning:
    """A stream's reasoning: each delta's under both names, its events counted for `usage`."""

    def __init__(self) -> None:
        self.events = 0

    def see(self, body: dict[str, Any]) -> bool:
        """Alias the reasoning of this chunk's deltas; True when the chunk changed."""
        changed = False
        for choice in body.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if reasoning_text(delta):
                self.events += 1
            changed = alias_reasoning(delta) or changed
        return changed

    def fill(self, usage: dict[str, Any]) -> bool:
        """Count the streamed reasoning into `usage` when the upstream did not; True if it did."""
        if not self.events or _counted(usage):
            return False
        _fill(usage, self.events)
        return True
