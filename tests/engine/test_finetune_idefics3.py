"""The trainer's Idefics3 base (`tiny-vl`, engine/finetune/idefics3.py) on the real random checkpoint:
an image-and-text line becomes the tokens and pixels the checkpoint's own processor makes for vLLM,
the loss is on the assistant's tokens only, the training path's logits equal transformers' own
Idefics3 forward on the same image, and LoRA targets the text model's projections only. That vLLM
serves the trained adapter as PEFT runs it is tested in tests/gateway/fine_tuning/test_fine_tuning_vl.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.checkpoint import ensure_checkpoint
from tests.gateway.media.vision import image_part
from tests.long_vita.media import picture

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is in this picture?"
ANSWER = "The picture shows Lora."


@pytest.fixture(scope="module")
def trainee() -> Any:
    from engine.finetune.idefics3 import Idefics3Trainee

    checkpoint = ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "tiny-vl", preset="tiny-vl", seed=0)
    return Idefics3Trainee.from_checkpoint(checkpoint)


def _line(*images: Any) -> dict[str, Any]:
    parts = [image_part(image) for image in images]
    return {
        "messages": [
            {"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": ANSWER},
        ]
    }


def test_an_image_line_is_what_the_processor_makes_for_vllm(trainee: Any) -> None:
    from engine.finetune.data import IGNORE, supervised_example

    images = [picture(300, 200, 1), picture(64, 500, 2)]
    line = _line(*images)
    processor = trainee.processor
    example = trainee.see_images(line, supervised_example(processor.tokenizer, line, 512))

    prompt = processor.tokenizer.apply_chat_template(
        line["messages"][:1], tokenize=False, add_generation_prompt=True
    )
    served = processor(text=prompt, images=[images], return_tensors="pt")["input_ids"][0].tolist()
    assert example.input_ids[: len(served)] == served
    learnt = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert processor.tokenizer.decode(learnt) == ANSWER + "<|im_end|>\n"
    assert all(label == IGNORE for label in example.labels[: len(served)])
    positions, features = example.features
    image_id = trainee.config.image_token_id
    assert positions == [i for i, token in enumerate(example.input_ids) if token == image_id]
    assert features.shape == (2 * 64, trainee.config.text_config.hidden_size)


def test_the_training_path_equals_transformers_forward(trainee: Any) -> None:
    """The embeddings the trainer builds (features placed once, then the text model and head) give
    the logits transformers' own forward gives from the processor's pixel inputs."""
    import torch

    from engine.finetune.data import supervised_example

    image = picture(180, 240, 7)
    line = _line(image)
    example = trainee.see_images(line, supervised_example(trainee.processor.tokenizer, line, 512))
    ids = torch.tensor([example.input_ids])
    pixels = trainee.processor(text="<image>", images=[[image]], return_tensors="pt")
    with torch.no_grad():
        hidden = trainee.model(inputs_embeds=trainee.embed(ids, [example.features])).last_hidden_state
        ours = trainee.lm_head(hidden)
        theirs = trainee(
            input_ids=ids,
            pixel_values=pixels["pixel_values"],
            pixel_attention_mask=pixels["pixel_attention_mask"],
        ).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_lora_targets_the_text_models_projections_only(trainee: Any) -> None:
    import re

    from engine.finetune.idefics3 import TEXT_PROJECTIONS

    names = [name for name, _ in trainee.named_modules()]
    targeted = {name for name in names if re.fullmatch(TEXT_PROJECTIONS, name)}
    attn = {f"model.text_model.layers.{i}.self_attn.{n}_proj" for i in (0, 1) for n in "qkvo"}
    mlp = {f"model.text_model.layers.{i}.mlp.{n}_proj" for i in (0, 1) for n in ("gate", "up", "down")}
    assert targeted == attn | mlp
    assert any(name.startswith("model.vision_model.") and name.endswith("q_proj") for name in names)
