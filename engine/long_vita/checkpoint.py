"""Random-weight Long-VITA checkpoints in the published Hugging Face layout.

Registered with `engine.architectures` as `long_vita`; the `tiny-long-vita` preset builds as it:
`python -m engine build --preset tiny-long-vita`. `config.json` is `config_14B.json`'s shape
(a Qwen2 config, `model_type: long_vita`, the InternViT config under `visual`) at the preset's
widths; the tensors carry the names `LongVITAForCausalLM`'s modules give them
(`model.vision_model.*` InternViT, `model.vision_projection.*` the resampler projector,
`model.*`/`lm_head` Qwen2); the tokenizer is Qwen2.5's plus the original's 17 image and video
tokens, so `<image>` is 151680 as in the published tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.architectures.base import linear, normal
from engine.architectures.qwen2 import Qwen2Writer
from engine.long_vita.config import ADDED_TOKENS, MODEL_TYPE
from engine.presets import Preset, VisionLanguagePreset

if TYPE_CHECKING:
    import torch

__all__ = ["CHAT_TEMPLATE_RESOURCE", "LongVitaWriter"]

CHAT_TEMPLATE_RESOURCE = "templates/long_vita_chat.jinja"
DOWNSAMPLE = 2
"""The resampler's pixel shuffle merges 2 x 2 patches (`vision_downsample_ratio = 0.5`, fixed in its code)."""


class LongVitaWriter:
    """Writes `LongVITAForCausalLM`'s config and weights for a vision-language preset."""

    name = MODEL_TYPE
    vision_language = True
    added_tokens = ADDED_TOKENS
    chat_template = CHAT_TEMPLATE_RESOURCE

    def config(self, preset: Preset) -> dict[str, Any]:
        if not isinstance(preset, VisionLanguagePreset):
            raise ValueError(f"architecture long_vita needs a vision-language preset, not {preset.name}")
        text = Qwen2Writer().config(preset)
        text.update(
            {
                "architectures": ["LongVITAForCausalLM"],
                "model_type": MODEL_TYPE,
                "max_window_layers": preset.num_hidden_layers,
                "sliding_window": preset.max_position_embeddings,
                "tie_word_embeddings": False,
            }
        )
        text.pop("rope_scaling")
        text["visual"] = {
            "architectures": ["InternVisionModel"],
            "attention_dropout": 0.0,
            "drop_path_rate": 0.0,
            "dropout": 0.0,
            "hidden_act": "gelu",
            "hidden_size": preset.vision_hidden_size,
            "image_size": preset.image_size,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": preset.vision_intermediate_size,
            "layer_norm_eps": 1e-06,
            "model_type": "intern_vit_6b",
            "norm_type": "layer_norm",
            "num_attention_heads": preset.vision_num_attention_heads,
            "num_channels": 3,
            "num_hidden_layers": preset.vision_num_hidden_layers,
            "patch_size": preset.patch_size,
            "qk_normalization": False,
            "qkv_bias": True,
            "torch_dtype": "bfloat16",
            "use_flash_attn": True,
        }
        return text

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Qwen2's tensors (norms and biases drawn too, so a skipped one shows), then the vision side."""
        out = Qwen2Writer().tensors(config, generator)
        for name in [n for n in out if n.endswith(("layernorm.weight", "norm.weight"))]:
            out[name] = normal(out[name].shape, generator, 0.1) + 1.0
        for name in [n for n in out if n.endswith("_proj.bias")]:
            out[name] = normal(out[name].shape, generator, 0.1)
        out.update(_vision_tensors(config, generator))
        return out


def _vision_tensors(config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    visual = config["visual"]
    width = int(visual["hidden_size"])
    inter = int(visual["intermediate_size"])
    patch = int(visual["patch_size"])
    positions = (int(visual["image_size"]) // patch) ** 2 + 1
    merged = width * DOWNSAMPLE**2

    def around_one(size: int) -> torch.Tensor:
        return normal((size,), generator, 0.1) + 1.0

    def small(size: int) -> torch.Tensor:
        return normal((size,), generator, 0.1)

    v = "model.vision_model"
    out: dict[str, torch.Tensor] = {
        f"{v}.embeddings.class_embedding": normal((1, 1, width), generator, 1.0),
        f"{v}.embeddings.patch_embedding.weight": normal(
            (width, 3, patch, patch), generator, (3 * patch * patch) ** -0.5
        ),
        f"{v}.embeddings.patch_embedding.bias": small(width),
        f"{v}.embeddings.position_embedding": normal((1, positions, width), generator, 1.0),
    }
    for i in range(int(visual["num_hidden_layers"])):
        p = f"{v}.encoder.layers.{i}"
        out[f"{p}.norm1.weight"] = around_one(width)
        out[f"{p}.norm1.bias"] = small(width)
        out[f"{p}.attn.qkv.weight"] = linear(3 * width, width, generator)
        out[f"{p}.attn.qkv.bias"] = small(3 * width)
        out[f"{p}.attn.proj.weight"] = linear(width, width, generator)
        out[f"{p}.attn.proj.bias"] = small(width)
        out[f"{p}.ls1"] = around_one(width)
        out[f"{p}.norm2.weight"] = around_one(width)
        out[f"{p}.norm2.bias"] = small(width)
        out[f"{p}.mlp.fc1.weight"] = linear(inter, width, generator)
        out[f"{p}.mlp.fc1.bias"] = small(inter)
        out[f"{p}.mlp.fc2.weight"] = linear(width, inter, generator)
        out[f"{p}.mlp.fc2.bias"] = small(width)
        out[f"{p}.ls2"] = around_one(width)
    r = "model.vision_projection"
    out[f"{r}.pre_proj_layernorm.weight"] = around_one(merged)
    out[f"{r}.pre_proj_layernorm.bias"] = small(merged)
    out[f"{r}.mlp.0.weight"] = linear(width, merged, generator)
    # The projector's output replaces token embeddings of std ~0.02; at unit scale it would drown
    # the text, so it is drawn near the embeddings' scale.
    out[f"{r}.mlp.2.weight"] = normal((int(config["hidden_size"]), width), generator, 0.05 * width**-0.5)
    return out
