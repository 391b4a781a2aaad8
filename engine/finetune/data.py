"""OpenAI's fine-tuning lines as token ids: the chat template the engine serves with, the loss on
the assistant turns only (OpenAI's `weight` 0 leaves a turn out), and DPO's preference pairs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["PreferencePair", "SupervisedExample", "preference_pair", "read_jsonl", "supervised_example"]

IGNORE = -100
"""The label torch's cross-entropy skips: a prompt token, not something to learn."""


class ChatTemplate(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class SupervisedExample:
    input_ids: list[int]
    labels: list[int]
    features: Any = None
    """A multimodal example's (positions, features): what replaces the embeddings of its image
    context tokens (a vision-language base's `see_images` fills it; None for text)."""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _render(
    tokenizer: ChatTemplate, messages: Sequence[dict[str, Any]], *, prompt: bool, tools: Any
) -> list[int]:
    ids = tokenizer.apply_chat_template(
        list(messages), tools=tools, tokenize=True, add_generation_prompt=prompt
    )
    # transformers 4.5x may answer a BatchEncoding rather than the list of ids.
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(token) for token in ids]


def supervised_example(tokenizer: ChatTemplate, line: dict[str, Any], max_tokens: int) -> SupervisedExample:
    """One chat line: every assistant message is learnt (with its end-of-turn token) unless its
    `weight` is 0, as OpenAI trains; the rest of the conversation is context only."""
    messages: list[dict[str, Any]] = [dict(m) for m in line["messages"]]
    tools = line.get("tools")
    input_ids: list[int] = []
    labels: list[int] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages[: index + 1]]
        before = _render(tokenizer, clean[:-1], prompt=True, tools=tools)
        through = _render(tokenizer, clean, prompt=False, tools=tools)
        # The template renders each turn the same whatever follows it, so `before` is a prefix.
        context = before[len(input_ids) :]
        turn = through[len(before) :]
        input_ids += context + turn
        learn = message.get("weight", 1) != 0
        labels += [IGNORE] * len(context) + (turn if learn else [IGNORE] * len(turn))
    return SupervisedExample(input_ids[:max_tokens], labels[:max_tokens])


def preference_pair(tokenizer: ChatTemplate, line: dict[str, Any], max_tokens: int) -> PreferencePair:
    """One DPO line: `input` (messages, tools) and the preferred and non-preferred assistant turns."""
    messages = list(line["input"]["messages"])
    tools = line["input"].get("tools")
    prompt = _render(tokenizer, messages, prompt=True, tools=tools)

    def answer(output: Iterable[dict[str, Any]]) -> list[int]:
        full = _render(tokenizer, [*messages, *output], prompt=False, tools=tools)
        return full[len(prompt) :]

    chosen = answer(line["preferred_output"])
    rejected = answer(line["non_preferred_output"])
    room = max(1, max_tokens - len(prompt))
    return PreferencePair(prompt, chosen[:room], rejected[:room])
