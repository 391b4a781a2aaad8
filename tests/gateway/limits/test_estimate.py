"""What a request without max_tokens reserves: what the engine may really generate, or the cap."""

from __future__ import annotations

from typing import Any

from gateway.limits import TokenEstimator
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.completions import CompletionRequest

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def _chat(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def _completion(**extra: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **extra})


def test_a_chat_without_max_tokens_reserves_the_models_room() -> None:
    estimate = TokenEstimator(256).estimate(_chat(), CHAT, "m", 4096)
    assert estimate.completion_tokens == 4096 - estimate.prompt_tokens
    assert estimate.cap is None
    assert TokenEstimator(256).estimate(_chat(max_tokens=10), CHAT, "m", 4096).completion_tokens == 10
    # A model whose length is not known: the default, and settlement counts the rest.
    assert TokenEstimator(256).estimate(_chat(), CHAT, "m", None).completion_tokens == 256


def test_the_cap_is_reserved_and_sent_when_below_the_room() -> None:
    capped = TokenEstimator(256, completion_cap=100)
    estimate = capped.estimate(_chat(n=2), CHAT, "m", 4096)
    assert (estimate.completion_tokens, estimate.cap) == (200, 100)
    assert capped.estimate(_chat(max_tokens=7), CHAT, "m", 4096).cap is None  # the client's own
    above = capped.estimate(_chat(), CHAT, "m", 50)
    assert above.cap is None and above.completion_tokens == 50 - above.prompt_tokens


def test_a_completion_without_max_tokens_gets_the_engines_sixteen() -> None:
    estimator = TokenEstimator(256)
    assert estimator.estimate(_completion(), COMPLETIONS, "m", 4096).completion_tokens == 16
    explicit_null = estimator.estimate(_completion(max_tokens=None), COMPLETIONS, "m", 4096)
    assert explicit_null.completion_tokens == 4096 - explicit_null.prompt_tokens


def test_prompt_scoring_reserves_one_token_and_keeps_its_max_tokens() -> None:
    # `echo` with `max_tokens: 0` (issue 17): vLLM generates one token; the cap must not replace the 0.
    capped = TokenEstimator(256, completion_cap=100)
    estimate = capped.estimate(_completion(echo=True, max_tokens=0), COMPLETIONS, "m", 4096)
    assert (estimate.completion_tokens, estimate.cap) == (1, None)


def test_best_of_still_reserves_its_choices() -> None:
    # `best_of` is forwarded untyped (vLLM 0.32 ignores it); a provider may honour it.
    estimate = TokenEstimator(256).estimate(_completion(max_tokens=4, best_of=3), COMPLETIONS, "m", 4096)
    assert estimate.completion_tokens == 12
