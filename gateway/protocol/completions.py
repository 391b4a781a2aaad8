"""The legacy /v1/completions request, as OpenAI documents it, plus vLLM's extras."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.protocol.common import InvalidParam, SamplingParams

# A prompt is text, a list of texts, a list of token ids or a list of such lists.
Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(SamplingParams):
    prompt: Prompt
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    suffix: str | None = None

    def check(self) -> None:
        super().check()  # stream_options, stop
        if isinstance(self.prompt, list) and not self.prompt:
            raise InvalidParam("prompt", "`prompt` must not be an empty list.")
        if self.best_of is not None and self.n is not None and self.best_of < self.n:
            raise InvalidParam("best_of", "`best_of` must be greater than or equal to `n`.")
