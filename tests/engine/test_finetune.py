"""The LoRA trainer (engine/finetune) on the real Qwen2-shaped tiny checkpoint and its tokenizer:
the loss masks follow the chat template (only assistant turns, `weight` 0 left out), and a DPO run
raises the preferred answer's log-probability over the rejected one's (issue 20, point 2). The
supervised run's result (the taught answer, greedy, from vLLM) is tested end to end in
tests/gateway/fine_tuning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def test_only_assistant_turns_are_learnt(qwen2_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    from engine.finetune.data import IGNORE, supervised_example

    tokenizer = AutoTokenizer.from_pretrained(qwen2_checkpoint)
    line: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "One?"},
            {"role": "assistant", "content": "Uno.", "weight": 0},
            {"role": "user", "content": "Two?"},
            {"role": "assistant", "content": "Dos."},
        ]
    }
    example = supervised_example(tokenizer, line, 512)
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in line["messages"]]
    rendered: Any = tokenizer.apply_chat_template(clean, tokenize=True)
    ids = rendered["input_ids"] if isinstance(rendered, dict) or hasattr(rendered, "input_ids") else rendered
    assert example.input_ids == list(ids)
    learnt = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(learnt) == "Dos.<|im_end|>\n"


def _pairs(path: Path, count: int) -> Path:
    line: dict[str, Any] = {
        "input": {"messages": [{"role": "user", "content": "Pick a colour."}]},
        "preferred_output": [{"role": "assistant", "content": "Green."}],
        "non_preferred_output": [{"role": "assistant", "content": "Purple."}],
    }
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(count)))
    return path


def test_dpo_prefers_the_preferred_answer(qwen2_checkpoint: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.finetune.data import preference_pair
    from engine.finetune.train import TrainConfig, _answer_logprob, train

    train_file = _pairs(tmp_path / "pairs.jsonl", 12)
    events: list[dict[str, Any]] = []
    config = TrainConfig(
        base=qwen2_checkpoint, train_file=train_file, out=tmp_path / "adapter", method="dpo",
        epochs=2, batch_size=4, learning_rate=5e-3, beta=0.1,
    )  # fmt: skip
    metrics = train(config, events.append)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert metrics["step"] == 6 and [e["step"] for e in events if e["type"] == "step"] == list(range(1, 7))

    tokenizer = AutoTokenizer.from_pretrained(qwen2_checkpoint)
    pair = preference_pair(tokenizer, json.loads(train_file.read_text().splitlines()[0]), 512)
    base = AutoModelForCausalLM.from_pretrained(qwen2_checkpoint, dtype=torch.float32)

    def margin(model: Any) -> float:
        with torch.no_grad():
            return float(
                _answer_logprob(model, pair.prompt, pair.chosen)
                - _answer_logprob(model, pair.prompt, pair.rejected)
            )

    before = margin(base)
    after = margin(PeftModel.from_pretrained(base, tmp_path / "adapter"))
    assert after > before + 1.0, (before, after)


def test_a_text_only_base_refuses_image_examples(qwen2_checkpoint: Path, tmp_path: Path) -> None:
    import pytest

    from engine.finetune.train import TrainConfig, train

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    line = {"messages": [{"role": "user", "content": [image]}, {"role": "assistant", "content": "A cat."}]}
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("\n".join(json.dumps(line) for _ in range(10)))
    config = TrainConfig(base=qwen2_checkpoint, train_file=train_file, out=tmp_path / "adapter")
    with pytest.raises(ValueError, match="Line 1 has an image, but this base model reads text only"):
        train(config, lambda event: None)
    assert not (tmp_path / "adapter").exists()


def test_the_loss_at_the_answers_positions_is_the_full_heads(qwen2_checkpoint: Path) -> None:
    """The SFT loss and DPO's answer log-probabilities apply the head at the positions that
    predict learnt tokens only (`logits_to_keep`): the same values as the full head's, padded rows
    of different lengths included."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.finetune.data import IGNORE, supervised_example
    from engine.finetune.train import _answer_logprob, _pad, _sft_loss

    tokenizer = AutoTokenizer.from_pretrained(qwen2_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(qwen2_checkpoint, torch_dtype=torch.float32)
    turns = [("One?", "Uno."), ("Say something longer, please.", "Bien, algo un poco más largo.")]
    batch = [
        supervised_example(
            tokenizer,
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
            512,
        )
        for q, a in turns
    ]
    with torch.no_grad():
        ids, labels = _pad([e.input_ids for e in batch], 0), _pad([e.labels for e in batch], IGNORE)
        mask = _pad([[1] * len(e.input_ids) for e in batch], 0)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        full = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE
        )
        assert float(_sft_loss(model, batch, 0)) == pytest.approx(float(full), rel=1e-5)
        prompt, answer = batch[1].input_ids[:-6], batch[1].input_ids[-6:]
        whole = model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(whole, dim=-1).gather(1, torch.tensor(answer)[:, None]).sum()
        assert float(_answer_logprob(model, prompt, answer)) == pytest.approx(float(expected), rel=1e-5)
