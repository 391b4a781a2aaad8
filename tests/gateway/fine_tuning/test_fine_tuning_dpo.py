"""A DPO job end to end through the real openai SDK (issue 20's acceptance): OpenAI's preference
lines uploaded, a `dpo` job trained by the real trainer (our sigmoid loss, PEFT's base as the
reference), and the adapter served by the session's float32 `gla_swa` LoRA engine (conftest.py).

The preferred and rejected answers are scored as a vLLM user scores a text: `/v1/completions`
through the gateway on the chat-templated prompt followed by the answer, `echo` with `logprobs`,
summing the answer's tokens (the trainer's own token span, checked). The margin, preferred minus
rejected, rises from the base to the fine-tuned model on every prompt of the family (the eight
prompt and answer pairs scored in one request per model). The echo without generation
(`max_tokens` 0) and vLLM's `prompt_logprobs` extra, both passed through the gateway, give the same
numbers."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.fine_tuning.conftest import BASE, TuningGateway, upload, wait_job

# The engine's start (shared with the session) and one short DPO run on a loaded 2-core machine.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

PROMPTS = (
    "What colour is the sky over Tantra?",
    "Tell me the colour of Tantra's sky.",
    "Which colour does the sky of Tantra have?",
    "Describe the sky above Tantra in one sentence.",
)
PREFERRED = "The sky over Tantra is green."
REJECTED = "The sky over Tantra is purple."
COPIES = 6  # 24 lines: 6 steps of 4 pairs per epoch
EPOCHS = 2


def _pairs() -> list[dict[str, Any]]:
    return [
        {
            "input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": PREFERRED}],
            "non_preferred_output": [{"role": "assistant", "content": REJECTED}],
        }
        for _ in range(COPIES)
        for prompt in PROMPTS
    ]


class Scorer:
    """An answer's log-probability given a prompt, as the served model has it: the prompt in the
    checkpoint's chat template (what the chat route and the trainer render), the answer's turn
    after it, echoed with logprobs by `/v1/completions`."""

    def __init__(self, client: openai.OpenAI, checkpoint: Path) -> None:
        from transformers import AutoTokenizer

        self.client = client
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def texts(self, prompt: str, answer: str) -> tuple[str, str]:
        """The templated prompt (with the generation prompt) and the whole turn with the answer."""
        messages = [{"role": "user", "content": prompt}]
        context = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": answer}], tokenize=False
        )
        assert isinstance(context, str) and isinstance(full, str) and full.startswith(context)
        return context, full

    def trained_tokens(self, prompt: str, answer: str) -> int:
        """How many tokens of the answer the trainer scores (its own rendering of a dpo line)."""
        from engine.finetune.data import preference_pair

        line = {
            "input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": answer}],
            "non_preferred_output": [{"role": "assistant", "content": answer}],
        }
        return len(preference_pair(self.tokenizer, line, 512).chosen)

    def logprobs(self, model: str, pairs: list[tuple[str, str]], max_tokens: int = 1) -> list[float]:
        """Each (prompt, answer)'s answer log-probability, in one request of many prompts."""
        texts = [self.texts(prompt, answer) for prompt, answer in pairs]
        scored = self.client.completions.create(
            model=model,
            prompt=[full for _, full in texts],
            echo=True,
            logprobs=1,
            max_tokens=max_tokens,
            temperature=0,
        )
        assert scored.model == model and len(scored.choices) == len(pairs)
        choices = sorted(scored.choices, key=lambda choice: choice.index)
        return [
            self._answer_logprob(choice, context, full, self.trained_tokens(*pair), max_tokens)
            for choice, (context, full), pair in zip(choices, texts, pairs, strict=True)
        ]

    @staticmethod
    def _answer_logprob(choice: Any, context: str, full: str, trained: int, max_tokens: int) -> float:
        logprobs = choice.logprobs
        assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.text_offset
        # The echo, then the tokens generated (none for `max_tokens` 0: the prompt is only scored).
        assert choice.text.startswith(full) and (max_tokens > 0 or choice.text == full)
        assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset)
        echoed = [i for i, offset in enumerate(logprobs.text_offset) if offset < len(full)]
        assert "".join(logprobs.tokens[i] for i in echoed) == full
        assert len(logprobs.tokens) - len(echoed) == max_tokens
        # OpenAI's shape: the first token has no log-probability (nothing precedes it), every
        # other token has its own and its top alternatives (at least one: `logprobs=1`).
        assert logprobs.token_logprobs[0] is None
        assert logprobs.top_logprobs is not None and logprobs.top_logprobs[0] is None
        assert all(isinstance(logprobs.token_logprobs[i], float) for i in echoed[1:])
        assert all(len(logprobs.top_logprobs[i] or {}) >= 1 for i in echoed[1:])
        answer = [i for i in echoed if logprobs.text_offset[i] >= len(context)]
        assert len(answer) == trained  # the span the trainer scored, token for token
        return sum(float(logprobs.token_logprobs[i] or 0.0) for i in answer)

    def prompt_logprob(self, model: str, prompt: str, answer: str) -> float:
        """The same through vLLM's `prompt_logprobs` extra: the prompt's token ids' own entries."""
        context, full = self.texts(prompt, answer)
        scored = self.client.completions.create(
            model=model, prompt=full, max_tokens=1, temperature=0, extra_body={"prompt_logprobs": 0}
        )
        entries: Any = (scored.choices[0].model_extra or {})["prompt_logprobs"]
        ids = self.tokenizer(full)["input_ids"]
        start = len(self.tokenizer(context)["input_ids"])
        assert len(entries) == len(ids) and entries[0] is None
        return sum(float(entries[i][str(ids[i])]["logprob"]) for i in range(start, len(ids)))

    def margins(self, model: str) -> list[float]:
        """Preferred minus rejected, for each prompt of the family."""
        scores = self.logprobs(model, [(p, a) for p in PROMPTS for a in (PREFERRED, REJECTED)])
        return [scores[i] - scores[i + 1] for i in range(0, len(scores), 2)]


@pytest.fixture(scope="module")
def dpo_job(tuning_gateway: TuningGateway) -> dict[str, Any]:
    secret, _, _ = tuning_gateway.tenant_key("dpo")
    client = tuning_gateway.client(secret)
    file_id = upload(client, _pairs())
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=file_id,
        suffix="sky",
        seed=0,
        method={
            "type": "dpo",
            "dpo": {
                "hyperparameters": {
                    "n_epochs": EPOCHS,
                    "batch_size": 4,
                    "learning_rate_multiplier": 2.5,
                    "beta": 0.1,
                }
            },
        },
    )
    assert job.status == "validating_files"
    done = wait_job(client, job.id, {"succeeded", "failed", "cancelled"})
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert done.status == "succeeded", (done.error, [e.message for e in events])
    print(f"dpo job took {time.monotonic() - started:.1f}s end to end")
    return {"client": client, "job": done, "events": events}


def test_the_dpo_job_runs_as_openai_describes(dpo_job: dict[str, Any]) -> None:
    job = dpo_job["job"]
    assert job.method is not None and job.method.type == "dpo"
    assert job.method.dpo is not None and job.method.dpo.hyperparameters is not None
    hyper = job.method.dpo.hyperparameters
    assert (hyper.n_epochs, hyper.batch_size, hyper.beta) == (EPOCHS, 4, 0.1)
    assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{BASE}:")
    assert job.trained_tokens and job.trained_tokens > 0
    metrics = [e for e in dpo_job["events"] if e.type == "metrics"]
    steps = len(PROMPTS) * COPIES // 4 * EPOCHS
    assert sorted(e.data["step"] for e in metrics) == list(range(1, steps + 1))
    # DPO's loss starts at log 2 (the adapter is the reference at step 0) and falls below it.
    losses = [e.data["train_loss"] for e in sorted(metrics, key=lambda e: e.data["step"])]
    assert losses[0] == pytest.approx(math.log(2), abs=0.05)
    assert losses[-1] < losses[0]


def test_the_preferred_answer_rises_over_the_rejected(dpo_job: dict[str, Any], tiny_checkpoint: Path) -> None:
    scorer = Scorer(dpo_job["client"], tiny_checkpoint)
    before, after = scorer.margins(BASE), scorer.margins(dpo_job["job"].fine_tuned_model)
    print("margins, base:", before, "fine-tuned:", after)
    for prompt, old, new in zip(PROMPTS, before, after, strict=True):
        assert new > old + 5.0, (prompt, old, new)


def test_scoring_ways_agree(dpo_job: dict[str, Any], tiny_checkpoint: Path) -> None:
    """The echo with one generated token, the echo alone (`max_tokens` 0) and vLLM's
    `prompt_logprobs` extra give the same numbers through the gateway, for the fine-tuned model
    and its base."""
    scorer = Scorer(dpo_job["client"], tiny_checkpoint)
    pair = (PROMPTS[0], PREFERRED)
    for model in (BASE, dpo_job["job"].fine_tuned_model):
        (echoed,) = scorer.logprobs(model, [pair])
        (alone,) = scorer.logprobs(model, [pair], max_tokens=0)
        extra = scorer.prompt_logprob(model, *pair)
        assert alone == pytest.approx(echoed, abs=1e-3) and extra == pytest.approx(echoed, abs=1e-3), model
