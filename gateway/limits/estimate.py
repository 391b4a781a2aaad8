"""How many tokens a request will use, estimated before it runs, cheaply and on the high side.

The gateway has no tokenizer. Like OpenAI's own limiter it counts characters (four to a token),
plus a few tokens per chat message; what the chat template adds (a default system prompt, role
markers) is learned per model from the real `prompt_tokens` the engine reports: the estimate adds
the largest shortfall seen in the last requests. Completions reserve `max_tokens` for every choice of
every prompt. Settlement charges the real usage afterwards; an estimate on the high side makes a
limit hold even while many requests are in flight.

A request that sets no `max_tokens` may make the engine generate up to the model's context (vLLM's
default, and `ignore_eos` is forwarded), so it reserves that: the model's `max_model_len` less the
prompt. With a completion cap configured (`limits_max_completion_tokens`) it reserves the cap
instead, and the cap is sent to the engine as the request's `max_tokens` (`Estimate.cap`), so the
engine cannot generate more than was reserved. Only when neither the cap nor the model's length is
known (a provider that does not say) is the default reserved, and settlement counts what it used.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.protocol.common import SamplingParams

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4
# A media part a model takes itself (an image for a vision model): OpenAI's low-detail image. Media
# for a text-only model reach the estimate already turned into text by the adapters.
_PER_MEDIA_PART = 85
# A completion that leaves out max_tokens gets 16 (vLLM's default, and OpenAI's); one that sends
# `"max_tokens": null` may use all the room the model has, as a chat without max_tokens may.
_OMITTED_MAX_TOKENS = {"/v1/completions": 16}
# Before any real usage is seen: enough for common chat templates' system prompt and markers.
_INITIAL_SLACK = {"/v1/chat/completions": 32, "/v1/completions": 4, "/v1/messages": 32}


@dataclass(frozen=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int
    raw_prompt_tokens: int
    # The completion tokens per choice the gateway adds to a request that set none (the configured
    # cap), to be sent to the engine as its max_tokens; None when the request is sent as it is.
    cap: int | None = None

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TokenEstimator:
    def __init__(
        self, default_completion_tokens: int, *, completion_cap: int | None = None, history: int = 64
    ) -> None:
        self._default_completion = default_completion_tokens
        self._cap = completion_cap
        self._history = history
        self._shortfalls: dict[tuple[str, str], deque[int]] = {}

    def estimate(
        self, request: SamplingParams, endpoint: str, model: str, max_model_len: int | None = None
    ) -> Estimate:
        raw, prompts = _prompt_tokens(request)
        prompt = raw + self._slack(endpoint, model)
        room = max(1, max_model_len - prompt // max(prompts, 1)) if max_model_len else None
        per_choice, cap = self._completion(request, endpoint, room)
        # `best_of` is an untyped key now (vLLM 0.32 ignores it); a provider may still honour it.
        best_of = (request.model_extra or {}).get("best_of")
        choices = max(request.n or 1, best_of if isinstance(best_of, int) and 1 <= best_of <= 20 else 1)
        return Estimate(prompt, per_choice * choices * prompts, raw, cap)

    def estimate_counted(
        self, endpoint: str, model: str, raw_prompt_tokens: int, completion_tokens: int
    ) -> Estimate:
        """An estimate of a prompt counted elsewhere (the Messages API's, whose schema is not
        OpenAI's), with what the chat template adds learned per endpoint and model as for chat."""
        prompt = raw_prompt_tokens + self._slack(endpoint, model)
        return Estimate(prompt, completion_tokens, raw_prompt_tokens)

    def _completion(self, request: SamplingParams, endpoint: str, room: int | None) -> tuple[int, int | None]:
        """Completion tokens per choice to reserve, and the cap to send when the request set none:
        its own max_tokens, else the configured cap (when below what the model has room for), else
        all the room the model has, else the default; never more than the room."""
        asked = _max_tokens(request)
        if asked is None and "max_tokens" not in request.model_fields_set:
            asked = _OMITTED_MAX_TOKENS.get(endpoint)
        if asked is None and self._cap is not None and (room is None or self._cap < room):
            return self._cap, self._cap
        per_choice = asked or room or self._default_completion
        return (min(per_choice, room) if room is not None else per_choice), None

    @property
    def default_completion(self) -> int:
        """The completion tokens reserved for a request that names no limit and no room."""
        return self._default_completion

    def observe(self, endpoint: str, model: str, estimate: Estimate, actual_prompt_tokens: int) -> None:
        """Learn from a finished request how far the raw estimate fell short of the real prompt."""
        shortfalls = self._shortfalls.setdefault((endpoint, model), deque(maxlen=self._history))
        shortfalls.append(actual_prompt_tokens - estimate.raw_prompt_tokens)

    def _slack(self, endpoint: str, model: str) -> int:
        shortfalls = self._shortfalls.get((endpoint, model))
        if not shortfalls:
            return _INITIAL_SLACK.get(endpoint, 0)
        return max(0, max(shortfalls))


def _max_tokens(request: SamplingParams) -> int | None:
    value = getattr(request, "max_completion_tokens", None)
    value = request.max_tokens if value is None else value
    # 0 is a completion that only scores its prompt (`echo`); vLLM generates one token for it.
    return None if value is None else max(int(value), 1)


def _prompt_tokens(request: SamplingParams) -> tuple[int, int]:
    """Raw estimate of the prompt, and how many prompts the request holds (completions take lists)."""
    messages = getattr(request, "messages", None)
    if messages is not None:
        return _chat_tokens(request, messages), 1
    return _completion_tokens(getattr(request, "prompt", None))


def _chat_tokens(request: SamplingParams, messages: list[Any]) -> int:
    """A chat's messages: their text and tool calls by characters, the request's tools too, a few
    tokens per message and a fixed cost per media part."""
    chars = 0
    media = 0
    for message in messages:
        text, parts = _content_size(getattr(message, "content", None))
        chars += text
        media += parts
        for extra in ("tool_calls", "function_call"):
            value = getattr(message, extra, None)
            if value:
                chars += len(orjson.dumps(_dump(value)))
    for extra in ("tools", "functions"):
        value = getattr(request, extra, None)
        if value:
            chars += len(orjson.dumps(_dump(value)))
    return math.ceil(chars / _CHARS_PER_TOKEN) + _PER_MESSAGE * len(messages) + _PER_MEDIA_PART * media


def _content_size(content: Any) -> tuple[int, int]:
    """(characters of text, media parts) of one message's content: a string or a list of parts."""
    if isinstance(content, str):
        return len(content), 0
    if not isinstance(content, list):
        return 0, 0
    chars = media = 0
    for part in content:
        text = getattr(part, "text", None)
        if isinstance(text, str):
            chars += len(text)
        else:
            media += 1
    return chars, media


def _completion_tokens(prompt: Any) -> tuple[int, int]:
    """A completion's prompt: a string, token ids, or a list of prompts (each string or token ids)."""
    if isinstance(prompt, str):
        return math.ceil(len(prompt) / _CHARS_PER_TOKEN), 1
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return len(prompt), 1
        total = 0
        for item in prompt:
            total += len(item) if isinstance(item, list) else math.ceil(len(str(item)) / _CHARS_PER_TOKEN)
        return total, len(prompt)
    return 0, 1


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else value
