"""The legacy /v1/completions request, as OpenAI documents it, plus vLLM's extras."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.protocol.common import InvalidParam, SamplingParams

# A prompt is text, a list of texts, a list of token ids or a list of such lists.
Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(SamplingParams):
    # vLLM takes `prompt_embeds` (base64 tensors) in place of a prompt; one of the two is needed.
    prompt: Prompt | None = None
    prompt_embeds: str | list[str] | None = None
    # 0 scores the prompt without generating, with `echo` (OpenAI's spec and vLLM both allow it).
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    # No `best_of`: vLLM 0.32 has none (the key is ignored, whatever its value), so it is forwarded
    # as an unknown key and reserves nothing beyond `n`.
    echo: bool | None = None
    # OpenAI stops at 5; vLLM takes -1 (the whole vocabulary) and any count up to its
    # `--max-logprobs`, which only the engine knows, so the engine judges the upper bound.
    logprobs: Annotated[int, Field(ge=-1)] | None = None
    suffix: str | None = None

    def check(self) -> None:
        super().check()  # stream_options, stop, fields that do nothing
        if self.prompt in (None, "") and not self.prompt_embeds:
            code = "missing_required_parameter" if self.prompt is None else "invalid_value"
            message = "Either `prompt` or `prompt_embeds` must be given and non-empty."
            raise InvalidParam("prompt", message, code)
        if isinstance(self.prompt, list) and not self.prompt:
            raise InvalidParam("prompt", "`prompt` must not be an empty list.")
        if self.max_tokens == 0 and not self.echo:
            raise InvalidParam("max_tokens", "`max_tokens` may be 0 only with `echo` (to score the prompt).")
