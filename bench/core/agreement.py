"""How often a quantized engine picks the same greedy token as the bf16 one.

Two measures. Free-running: both decode from the same prompt and tokens
are compared position by position; one early flip makes the rest of the
sequence differ, so this is pessimistic. Teacher-forced: the quantized engine
continues bf16's own sequence one token at a time and we count the positions
where its greedy token is bf16's token; every position is judged on the same
context, which is the fair per-token rate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from bench.core.engine import Served, complete

__all__ = ["agreement", "greedy_sequences", "random_prompts", "teacher_forced"]


def random_prompts(lengths: Sequence[int], seed: int = 0, vocab: int = 151643) -> list[list[int]]:
    """Token-id prompts of the given lengths, drawn below Qwen2.5's first special token."""
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(n)] for n in lengths]


def greedy_sequences(served: Served, prompts: Sequence[Sequence[int]], new_tokens: int) -> list[list[int]]:
    return [list(complete(served, p, new_tokens)["token_ids"]) for p in prompts]


def teacher_forced(
    served: Served, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
) -> list[list[tuple[int, float]]]:
    """(greedy token, logprob lead over the runner-up) at each continuation position.

    One one-token request per position, each extending the last (so the prefix
    cache makes them cheap). Prompt logprobs would do it in one request, but
    vLLM 0.32 sometimes returns an infinite one there, which its JSON encoder
    then refuses (400). A position whose top-2 cannot be encoded gets NaN.
    """
    rows: list[list[tuple[int, float]]] = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        row = []
        for t in range(len(continuation)):
            context = [*prompt, *continuation[:t]]
            try:
                choice = complete(served, context, 1, logprobs=2)
                top = sorted(choice["logprobs"]["top_logprobs"][0].values(), reverse=True)
                margin = top[0] - top[1] if len(top) > 1 else float("inf")
            except RuntimeError:
                choice, margin = complete(served, context, 1), float("nan")
            row.append((int(choice["token_ids"][0]), margin))
        rows.append(row)
    return rows


def agreement(reference: Sequence[Sequence[int]], other: Sequence[Sequence[int]]) -> float:
    """Fraction of positions where the two token sequences agree."""
    pairs = [(a, b) for ref, got in zip(reference, other, strict=True) for a, b in zip(ref, got, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)
