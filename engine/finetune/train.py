"""The training loop: LoRA (PEFT) on a causal LM on CPU, supervised or DPO, progress as JSON lines.

DPO is our own loss (Rafailov et al. 2023, the sigmoid form) rather than trl's `DPOTrainer`: trl
is not installed, and the loss is a dozen lines over PEFT's `disable_adapter()` as the reference
model, which also saves a second copy of the weights.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.finetune.data import (
    IGNORE,
    PreferencePair,
    SupervisedExample,
    preference_pair,
    read_jsonl,
    supervised_example,
)

__all__ = ["TrainConfig", "load_base", "train"]

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Qwen2's projections: every linear layer of the decoder, the embeddings and head left alone (so
vLLM needs no extra vocabulary slots to serve the adapter). A `gla_swa` base adds its GLA gate's
linear layers (`engine.spikingbrain.torch_model.lora_target_modules`)."""

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    base: Path
    train_file: Path
    out: Path
    method: str = "supervised"
    validation_file: Path | None = None
    epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-3
    rank: int = 8
    alpha: int = 16
    beta: float = 0.1
    seed: int = 0
    max_tokens: int = 512
    threads: int = 1
    target_modules: str | Sequence[str] | None = None
    """PEFT's `target_modules` (names, or a string: one regular expression); None: every projection
    of the base (`TARGET_MODULES`, gla_swa's, or Idefics3's text model's)."""


def _emit_stdout(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _batches(items: list[Any], size: int, rng: random.Random) -> list[list[Any]]:
    order = items[:]
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def _sft_loss(model: Any, batch: list[SupervisedExample], pad_id: int) -> torch.Tensor:
    input_ids = _pad([e.input_ids for e in batch], pad_id)
    labels = _pad([e.labels for e in batch], IGNORE)
    mask = _pad([[1] * len(e.input_ids) for e in batch], 0)
    if any(e.features is not None for e in batch):
        return _multimodal_sft_loss(model.get_base_model(), batch, input_ids, labels, mask)
    # The head only at positions that predict a learnt token (in any row): a short answer after
    # a chat template's prompt, times a 151k vocabulary, made the full head most of a step's work.
    targets = labels[:, 1:]
    kept = (targets != IGNORE).any(dim=0).nonzero().flatten()
    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=kept).logits
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets[:, kept].reshape(-1), ignore_index=IGNORE
    )


def _multimodal_sft_loss(
    base: Any,
    batch: list[SupervisedExample],
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """A vision-language base's loss: the images' features replace their context tokens'
    embeddings, and the head is applied at the learnt positions only (an image's hundreds of
    prompt tokens times a 151k vocabulary would dominate the step otherwise)."""
    embeds = base.embed(input_ids, [e.features for e in batch])
    hidden = base.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    learnt = targets != IGNORE
    return F.cross_entropy(base.lm_head(hidden[learnt]), targets[learnt])


def _answer_logprob(model: Any, prompt: list[int], answer: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + answer], dtype=torch.long)
    # The head at the positions that predict the answer only (see _sft_loss).
    logits = model(input_ids=ids, logits_to_keep=len(answer) + 1).logits[0, :-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(answer)[:, None]).sum()


def _dpo_loss(model: Any, batch: list[PreferencePair], beta: float) -> torch.Tensor:
    losses = []
    for pair in batch:
        with torch.no_grad(), model.disable_adapter():
            ref = _answer_logprob(model, pair.prompt, pair.chosen) - _answer_logprob(
                model, pair.prompt, pair.rejected
            )
        policy = _answer_logprob(model, pair.prompt, pair.chosen) - _answer_logprob(
            model, pair.prompt, pair.rejected
        )
        losses.append(-F.logsigmoid(beta * (policy - ref)))
    return torch.stack(losses).mean()


def load_base(base: Path) -> tuple[Any, str | tuple[str, ...]]:
    """The base in float32 and its projections (PEFT's `target_modules`: names, or one regular
    expression): transformers' class for the checkpoint, or SpikingBrain's own torch model for
    `gla_swa` (no transformers class, no remote code), or Long-VITA's language model with the
    reference's vision path for `long_vita`, or transformers' Idefics3 with its own processor for
    `idefics3` (`tiny-vl`; images in examples for both). Also what tests and the bench build
    adapters on, so they need not know the base's architecture."""
    model_type = json.loads((base / "config.json").read_text()).get("model_type")
    if model_type == "idefics3":
        from engine.finetune.idefics3 import TEXT_PROJECTIONS, Idefics3Trainee

        return Idefics3Trainee.from_checkpoint(base), TEXT_PROJECTIONS
    if model_type == "long_vita":
        from engine.long_vita.torch_model import LongVitaTorchForCausalLM

        return LongVitaTorchForCausalLM.from_checkpoint(base), TARGET_MODULES
    if model_type == "gla_swa":
        from engine.spikingbrain.torch_model import GLAswaTorchForCausalLM, lora_target_modules

        model = GLAswaTorchForCausalLM.from_checkpoint(base)
        return model, lora_target_modules(model.gate_layout)
    return AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32), TARGET_MODULES


def _examples(config: TrainConfig, tokenizer: Any, base: Any, path: Path | None) -> list[Any]:
    """A file's examples; a base that sees images (`see_images`) gets each line's images placed."""
    lines = read_jsonl(path) if path is not None else []
    if config.method == "dpo":
        return [preference_pair(tokenizer, line, config.max_tokens) for line in lines]
    see = getattr(base, "see_images", None)
    if see is None:
        _refuse_images(lines)
    examples = [supervised_example(tokenizer, line, config.max_tokens) for line in lines]
    return [see(line, example) for line, example in zip(lines, examples, strict=True)] if see else examples


def _refuse_images(lines: list[Any]) -> None:
    """A text-only base would train on the text around an image as if the image were not there."""
    for number, line in enumerate(lines, start=1):
        for message in line.get("messages", []):
            content = message.get("content")
            if isinstance(content, list) and any(part.get("type") == "image_url" for part in content):
                raise ValueError(
                    f"Line {number} has an image, but this base model reads text only "
                    "(image examples train Long-VITA and Idefics3 bases)"
                )


def _targets(modules: str | Sequence[str]) -> str | list[str]:
    """PEFT's `target_modules`: a string is one regular expression, not a list of letters."""
    return modules if isinstance(modules, str) else list(modules)


def _load(config: TrainConfig, base: Any) -> tuple[Any, list[Any], list[Any]]:
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    return (
        tokenizer,
        _examples(config, tokenizer, base, config.train_file),
        _examples(config, tokenizer, base, config.validation_file),
    )


def train(config: TrainConfig, emit: Emit = _emit_stdout) -> dict[str, Any]:
    """Train, write the adapter to `config.out`, and answer the run's metrics (also emitted)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    started = time.monotonic()
    base, projections = load_base(config.base)
    tokenizer, examples, validation = _load(config, base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=0.0,
        target_modules=_targets(config.target_modules or projections),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)

    def loss_of(batch: list[Any]) -> torch.Tensor:
        if config.method == "dpo":
            return _dpo_loss(model, batch, config.beta)
        return _sft_loss(model, batch, pad_id)

    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    step = 0
    loss_value = float("nan")
    model.train()
    for epoch in range(1, config.epochs + 1):
        for batch in _batches(examples, config.batch_size, rng):
            loss = loss_of(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            emit(
                {"type": "step", "step": step, "total_steps": total, "epoch": epoch, "train_loss": loss_value}
            )
    metrics: dict[str, Any] = {"step": step, "train_loss": loss_value}
    model.eval()
    if validation:
        with torch.no_grad():
            metrics["valid_loss"] = float(sum(float(loss_of([v])) for v in validation) / len(validation))
    if config.method == "dpo":
        metrics["trained_tokens"] = (
            sum(len(p.prompt) + len(p.chosen) + len(p.rejected) for p in examples) * config.epochs
        )
    else:
        metrics["trained_tokens"] = sum(len(e.input_ids) for e in examples) * config.epochs
    config.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(config.out))
    metrics["seconds"] = round(time.monotonic() - started, 2)
    emit({"type": "done", **metrics})
    return metrics
