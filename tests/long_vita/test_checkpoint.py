"""The `tiny-long-vita` checkpoint: the published config shape, tensor names and tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from engine.checkpoint import default_architecture
from engine.long_vita.config import ADDED_TOKENS, token_id


def test_preset_builds_as_long_vita() -> None:
    assert default_architecture("tiny-long-vita") == "long_vita"
    assert default_architecture("tiny-vl") == "idefics3"


def test_config_is_a_qwen2_config_with_an_internvit_visual(long_vita_checkpoint: Path) -> None:
    config = json.loads((long_vita_checkpoint / "config.json").read_text())
    assert config["model_type"] == "long_vita"
    assert config["architectures"] == ["LongVITAForCausalLM"]
    visual = config["visual"]
    assert visual["model_type"] == "intern_vit_6b"
    assert (visual["image_size"], visual["patch_size"]) == (448, 14)
    assert visual["norm_type"] == "layer_norm"
    assert visual["qkv_bias"] is True
    assert visual["qk_normalization"] is False
    # config_14B.json's keys, widths apart.
    for key in (
        "rope_theta",
        "rms_norm_eps",
        "max_window_layers",
        "use_sliding_window",
        "tie_word_embeddings",
    ):
        assert key in config


def test_tensor_names_are_the_original_modules(long_vita_checkpoint: Path) -> None:
    with safe_open(str(long_vita_checkpoint / "model.safetensors"), "pt") as handle:
        names = set(handle.keys())
        shapes: dict[str, Any] = {n: tuple(handle.get_slice(n).get_shape()) for n in names}
    v = "model.vision_model"
    assert shapes[f"{v}.embeddings.position_embedding"] == (1, 32 * 32 + 1, 128)
    assert shapes[f"{v}.embeddings.patch_embedding.weight"] == (128, 3, 14, 14)
    for suffix in (
        "attn.qkv.weight",
        "attn.qkv.bias",
        "attn.proj.bias",
        "mlp.fc1.weight",
        "norm1.bias",
        "ls1",
        "ls2",
    ):
        assert f"{v}.encoder.layers.1.{suffix}" in names
    assert shapes["model.vision_projection.pre_proj_layernorm.weight"] == (512,)
    assert shapes["model.vision_projection.mlp.0.weight"] == (128, 512)
    assert shapes["model.vision_projection.mlp.2.weight"] == (128, 128)
    assert "model.vision_projection.mlp.0.bias" not in names
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.1.self_attn.q_proj.bias"} <= names


def test_tokenizer_has_the_originals_tokens_at_their_ids(long_vita_tokenizer: Any) -> None:
    for token in ADDED_TOKENS:
        assert long_vita_tokenizer.convert_tokens_to_ids(token) == token_id(token)
    assert token_id("<image>") == 151680
    assert long_vita_tokenizer("<image>\n").input_ids == [151680, 198]


def test_chat_template_places_images_and_videos_in_order(long_vita_tokenizer: Any) -> None:
    parts = [
        {"type": "text", "text": "First"},
        {"type": "image_url", "image_url": {"url": "a"}},
        {"type": "text", "text": "then"},
        {"type": "video_url", "video_url": {"url": "b"}},
        {"type": "text", "text": "last"},
    ]
    text = long_vita_tokenizer.apply_chat_template(
        [{"role": "user", "content": parts}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nFirst<image>\nthen<video>last<|im_end|>\n<|im_start|>assistant\n" in text
