"""The `think` reasoning parser: `<think>...</think>` written by the model itself, optional.

vLLM 0.32 loads this module by name (`--reasoning-parser-plugin engine.reasoning`, which
`EngineConfig` adds when `reasoning_parser` is `think`), in the API server and in the engine core
(structured outputs ask the parser where the reasoning ends).

Why not one of vLLM's own parsers, for the ChatML templates of the SpikingBrain and Qwen2.5 models
(docs/orchestration.md, "Reasoning"):
- `qwen3` and `deepseek_r1` take the whole answer as reasoning until `</think>` (Qwen3's template
  opens `<think>` in the prompt); a model whose template does not think first then answers
  nothing but reasoning. `deepseek_r1` also needs `<think>` to be one token, which these
  tokenizers do not have.
- `olmo3` works in string space (any tokenizer) and reads an answer without `</think>` as content
  when not streaming, but its stream starts in the reasoning state: the same answer streamed comes
  out as reasoning. This parser is `olmo3` with the stream starting as content, so an answer is
  split the same way in JSON and in a stream, and counts the reasoning tokens (vLLM's default
  counts none), which `olmo3` does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import regex as re
from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.reasoning import ReasoningParserManager
from vllm.reasoning.olmo3_reasoning_parser import Olmo3ReasoningParser, Olmo3ReasoningState

__all__ = ["NAME", "ThinkReasoningParser"]

NAME = "think"


class ThinkReasoningParser(Olmo3ReasoningParser):
    """`<think>reasoning</think>answer`, or just `answer`: both in JSON and in a stream."""

    # `<think>` is not optional here (it is in `olmo3`, for templates that open it in the prompt).
    reasoning_regex = re.compile(r"^<think>(?P<reasoning>.*?)</think>(?P<content>.*)$", re.DOTALL)

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        # The model opens `<think>` itself (the template does not): until it does, it answers.
        self.buffer.state = Olmo3ReasoningState.CONTENT
        # A stream's answer has begun (content streamed outside a `<think>` block).
        self._answering = False

    def extract_reasoning_streaming(self, *args: Any, **kwargs: Any) -> DeltaMessage | None:
        delta = super().extract_reasoning_streaming(*args, **kwargs)
        if delta is not None and delta.content and self.buffer.state is Olmo3ReasoningState.CONTENT:
            self._answering = True
        return delta

    def is_reasoning_end_streaming(self, input_ids: Sequence[int], delta_ids: Iterable[int]) -> bool:
        """The reasoning is over once the answer streams, `</think>` or not: vLLM hands the rest of
        the stream to the tool-call parser then (with only `</think>` ending it, as in `olmo3`, an
        answer that does not think would never have its tool calls parsed in a stream). The engine
        core's structured-output check, which streams nothing through this parser, falls back to
        `</think>` in the tokens (EngineConfig turns `enable_in_reasoning` on for this parser)."""
        return self._answering or super().is_reasoning_end_streaming(input_ids, delta_ids)

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        """The delta's tokens for the tool-call parser at the hand-over: all of them when the
        answer began without thinking (`olmo3` gives none: its delta then held `</think>`)."""
        return list(input_ids) if self._answering else super().extract_content_ids(input_ids)

    def count_reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        """The tokens of the reasoning text, re-tokenized: `<think>` and `</think>` are several
        ordinary tokens whose split varies, so the text is what is certain."""
        text = self.model_tokenizer.decode(list(token_ids))
        if self.think_end not in text:
            return 0
        reasoning, _ = self.extract_reasoning(text, None)  # type: ignore[arg-type]
        if not reasoning:
            return 0
        return len(self.model_tokenizer.encode(reasoning, add_special_tokens=False))


ReasoningParserManager.register_module(NAME, module=ThinkReasoningParser)
