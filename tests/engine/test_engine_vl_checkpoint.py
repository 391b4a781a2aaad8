"""The `tiny-vl` preset: a random-weight Idefics3 (SmolVLM's architecture) in the published layout,
which transformers' own classes load without a missing or unexpected tensor and whose own processor
turns images into the image tokens the model expects (vLLM serving it is tests/gateway/
test_media_vl_engine.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from PIL import Image

from engine.architectures.idefics3 import IMAGE_TOKENS, image_prompt_tokens
from engine.checkpoint import build_checkpoint, checkpoint_is_complete, default_architecture, read_manifest
from engine.presets import VisionLanguagePreset, get_preset


@pytest.fixture(scope="module")
def vl_checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer_cache: Path) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("ck") / "tiny-vl", "tiny-vl", cache_dir=tokenizer_cache)


def preset() -> VisionLanguagePreset:
    shape = get_preset("tiny-vl")
    assert isinstance(shape, VisionLanguagePreset)
    return shape


def test_files_manifest_and_default_architecture(vl_checkpoint: Path) -> None:
    names = {p.name for p in vl_checkpoint.iterdir()}
    assert {
        "preprocessor_config.json",
        "processor_config.json",
        "model.safetensors",
        "tokenizer.json",
    } <= names
    assert checkpoint_is_complete(vl_checkpoint, verify_hashes=True)
    manifest = read_manifest(vl_checkpoint)
    assert manifest is not None and (manifest["architecture"], manifest["preset"]) == ("idefics3", "tiny-vl")
    assert default_architecture("tiny-vl") == "idefics3"
    assert default_architecture("tiny") == "gla_swa"


def test_config_and_tokenizer_agree(vl_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    config = json.loads((vl_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    assert (config["text_config"]["model_type"], config["vision_config"]["model_type"]) == (
        "llama",
        "idefics3_vision",
    )
    assert config["text_config"]["hidden_size"] == get_preset("tiny").hidden_size
    tokenizer = AutoTokenizer.from_pretrained(str(vl_checkpoint))
    assert tokenizer.convert_tokens_to_ids("<image>") == config["image_token_id"]
    assert [tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS] == list(
        range(151665, 151665 + len(IMAGE_TOKENS))
    )
    assert tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]  # Qwen2.5's ids are untouched
    assert len(tokenizer) <= config["text_config"]["vocab_size"]
    processor_config = json.loads((vl_checkpoint / "processor_config.json").read_text())
    assert processor_config["image_seq_len"] == preset().image_tokens == 64
    generation = json.loads((vl_checkpoint / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]


def test_transformers_loads_and_runs_it_with_images(vl_checkpoint: Path) -> None:
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    model, info = cast(
        "tuple[Any, dict[str, Any]]",
        Idefics3ForConditionalGeneration.from_pretrained(
            str(vl_checkpoint), dtype=torch.bfloat16, output_loading_info=True
        ),
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched tensor
    processor = AutoProcessor.from_pretrained(str(vl_checkpoint))
    assert type(processor).__name__ == "Idefics3Processor"
    images = [Image.new("RGB", (300, 200), "red"), Image.new("RGB", (40, 90), "blue")]
    text = processor(text="What is it?", return_tensors="pt")
    inputs = processor(images=[images], text="<image>What is it?<image>", return_tensors="pt")
    # Each <image> placeholder becomes its run of <image> tokens plus the three around it.
    added = inputs["input_ids"].shape[1] - text["input_ids"].shape[1]
    assert added == 2 * image_prompt_tokens(preset())
    assert inputs["pixel_values"].shape[-2:] == (256, 256)
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_same_seed_same_bytes(vl_checkpoint: Path, tmp_path: Path, tokenizer_cache: Path) -> None:
    again = build_checkpoint(tmp_path / "again", "tiny-vl", cache_dir=tokenizer_cache)
    digest = hashlib.sha256((vl_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert hashlib.sha256((again / "model.safetensors").read_bytes()).hexdigest() == digest


def test_shapes_and_architectures_must_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vision-language shape"):
        build_checkpoint(tmp_path / "x", "tiny-vl", architecture="qwen2")
    with pytest.raises(ValueError, match="needs a vision-language preset"):
        build_checkpoint(tmp_path / "y", "tiny", architecture="idefics3")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_chat_template_places_images_where_they_were_sent(vl_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(vl_checkpoint))
    parts = [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " with "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
    ]
    messages: Any = [{"role": "user", "content": parts}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>user\nCompare <image> with <image><|im_end|>\n" in rendered


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
    ],
)
def test_chat_template_renders_text_as_qwen2_5_does(
    vl_checkpoint: Path, tokenizer_cache: Path, messages: list[Any]
) -> None:
    """String content, or the same text as a list of parts, renders exactly as Qwen2.5's template."""
    from transformers import AutoTokenizer

    from engine.tokenizer import build_tokenizer

    vl = AutoTokenizer.from_pretrained(str(vl_checkpoint))
    expected = build_tokenizer(cache_dir=tokenizer_cache).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    for variant in (messages, as_parts):
        assert vl.apply_chat_template(variant, tokenize=False, add_generation_prompt=True) == expected


def test_vllm_reads_the_template_as_taking_lists_of_parts(vl_checkpoint: Path) -> None:
    """vLLM hands the template OpenAI-style parts (so it places the images) only when it sees the
    template loop over a message's content."""
    hf_renderer = pytest.importorskip("vllm.renderers.hf")

    template = json.loads((vl_checkpoint / "tokenizer_config.json").read_text())["chat_template"]
    assert hf_renderer._detect_content_format(template, default="string") == "openai"
