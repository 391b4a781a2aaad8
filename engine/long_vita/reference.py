"""Long-VITA's whole forward pass in plain PyTorch: the test oracle.

Written from the original's `modeling_long_vita.py`, `modeling_intern_vit.py` (its naive, non-flash
attention path) and `resampler_projector.py`, and its HF inference's `get_external_inputs` for the
prompt, for reading rather than speed: float32 (or float64), no KV cache (every step recomputes
the whole sequence), no vLLM. The pixels come from `engine.long_vita.tiling`, the original's
preprocessing; which token each image's features replace is worked out here as the original
does it, by walking the `<image>` and `<video>` tags and recording positions
(`image_indices`), independently of the vLLM processor's prompt updates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from engine.long_vita.config import (
    IMAGE_TAG,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    PATCH_CONTEXT,
    PATCH_END,
    PATCH_START,
    VID_CONTEXT,
    VID_END,
    VID_START,
    VIDEO_TAG,
    LongVITAConfig,
    token_id,
)
from engine.long_vita.tiling import NEWLINE_ID, tile_image, video_frame_pixels

__all__ = ["LongVitaReference", "MultimodalPrompt", "expand_prompt"]


@dataclass(frozen=True)
class MultimodalPrompt:
    """Token ids with every image and video expanded, the pixels of every tile and frame in the
    order their features are placed, and the positions they replace (one per feature)."""

    ids: list[int]
    pixels: torch.Tensor
    positions: list[int]


def expand_prompt(
    ids: Sequence[int],
    images: Sequence[Image.Image] = (),
    videos: Sequence[Sequence[Image.Image] | np.ndarray] = (),
    tile_tokens: int = 256,
) -> MultimodalPrompt:
    """`get_external_inputs` for one prompt: every `<image>` tag first, then every `<video>` tag."""
    tiles: list[np.ndarray] = []
    positions: list[int] = []

    def block(out: list[int], start: str, context: str, end: str) -> None:
        out.append(token_id(start))
        positions.extend(range(len(out), len(out) + tile_tokens))
        out.extend([token_id(context)] * tile_tokens)
        out.append(token_id(end))

    out: list[int] = []
    images_left = list(images)
    for tok in ids:
        if tok != token_id(IMAGE_TAG):
            out.append(tok)
            continue
        tiling = tile_image(images_left.pop(0))
        tiles.append(tiling.pixels)
        block(out, IMG_START, IMG_CONTEXT, IMG_END)
        if len(tiling.pixels) > 1:
            for _row in range(tiling.rows):
                out.append(NEWLINE_ID)
                for _col in range(tiling.cols):
                    block(out, PATCH_START, PATCH_CONTEXT, PATCH_END)
    if images_left:
        raise ValueError(f"{len(images_left)} image(s) without an {IMAGE_TAG} tag")
    expanded, out = out, []
    videos_left = list(videos)
    for tok in expanded:
        if tok != token_id(VIDEO_TAG):
            out.append(tok)
            continue
        frames = video_frame_pixels(videos_left.pop(0))
        tiles.append(frames)
        for _frame in frames:
            block(out, VID_START, VID_CONTEXT, VID_END)
    pixels = torch.from_numpy(np.concatenate(tiles)) if tiles else torch.zeros(0, 3, 448, 448)
    return MultimodalPrompt(out, pixels, positions)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LongVitaReference:
    """Logits and greedy continuations of a `long_vita` checkpoint."""

    def __init__(
        self, config: LongVITAConfig, weights: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
    ) -> None:
        self.config = config
        self.dtype = dtype
        self.w = {name: tensor.to(dtype) for name, tensor in weights.items()}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, dtype: torch.dtype = torch.float32) -> LongVitaReference:
        root = Path(model_dir)
        config = LongVITAConfig(**json.loads((root / "config.json").read_text()))
        weights: dict[str, torch.Tensor] = {}
        for shard in sorted(root.glob("*.safetensors")):
            weights.update(load_file(str(shard)))
        return cls(config, weights, dtype)

    # --- vision: InternViT, CLS dropped, the resampler projector --------------------------------
    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(tiles, 3, 448, 448) -> (tiles, tile_tokens, hidden)."""
        w, visual = self.w, self.config.visual
        v = "model.vision_model"
        eps = float(visual["layer_norm_eps"])
        x = F.conv2d(
            pixels.to(self.dtype),
            w[f"{v}.embeddings.patch_embedding.weight"],
            w[f"{v}.embeddings.patch_embedding.bias"],
            stride=int(visual["patch_size"]),
        )
        n, width, side, _ = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([w[f"{v}.embeddings.class_embedding"].expand(n, 1, -1), x], dim=1)
        x = x + w[f"{v}.embeddings.position_embedding"]
        heads = int(visual["num_attention_heads"])
        for i in range(int(visual["num_hidden_layers"])):
            p = f"{v}.encoder.layers.{i}"
            h = F.layer_norm(x, (width,), w[f"{p}.norm1.weight"], w[f"{p}.norm1.bias"], eps)
            qkv = F.linear(h, w[f"{p}.attn.qkv.weight"], w[f"{p}.attn.qkv.bias"])
            q, k, vv = qkv.reshape(n, -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
            attn = ((q * (width // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            h = (attn @ vv).transpose(1, 2).reshape(n, -1, width)
            x = x + F.linear(h, w[f"{p}.attn.proj.weight"], w[f"{p}.attn.proj.bias"]) * w[f"{p}.ls1"]
            h = F.layer_norm(x, (width,), w[f"{p}.norm2.weight"], w[f"{p}.norm2.bias"], eps)
            h = F.linear(
                F.gelu(F.linear(h, w[f"{p}.mlp.fc1.weight"], w[f"{p}.mlp.fc1.bias"])),
                w[f"{p}.mlp.fc2.weight"],
                w[f"{p}.mlp.fc2.bias"],
            )
            x = x + h * w[f"{p}.ls2"]
        x = x[:, 1:, :].reshape(n, side, side, width)
        # The original's pixel_shuffle(scale_factor=0.5), step by step.
        x = x.view(n, side, side // 2, width * 2).permute(0, 2, 1, 3).contiguous()
        x = x.view(n, side // 2, side // 2, width * 4).permute(0, 2, 1, 3).contiguous()
        x = x.reshape(n, -1, width * 4)
        r = "model.vision_projection"
        x = F.layer_norm(
            x, (width * 4,), w[f"{r}.pre_proj_layernorm.weight"], w[f"{r}.pre_proj_layernorm.bias"]
        )
        return F.linear(F.gelu(F.linear(x, w[f"{r}.mlp.0.weight"])), w[f"{r}.mlp.2.weight"])

    # --- language model: Qwen2 -------------------------------------------------------------------
    def _rms(self, x: torch.Tensor, name: str) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.w[name] * (x * torch.rsqrt(variance + self.config.rms_norm_eps))

    def _attention(self, x: torch.Tensor, p: str, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        c, w = self.config, self.w
        heads, kv_heads = c.num_attention_heads, c.num_key_value_heads
        head_dim = c.hidden_size // heads
        seq = x.shape[0]
        q = (
            F.linear(x, w[f"{p}.q_proj.weight"], w[f"{p}.q_proj.bias"])
            .view(seq, heads, head_dim)
            .transpose(0, 1)
        )
        k = (
            F.linear(x, w[f"{p}.k_proj.weight"], w[f"{p}.k_proj.bias"])
            .view(seq, kv_heads, head_dim)
            .transpose(0, 1)
        )
        v = (
            F.linear(x, w[f"{p}.v_proj.weight"], w[f"{p}.v_proj.bias"])
            .view(seq, kv_heads, head_dim)
            .transpose(0, 1)
        )
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=0)
        v = v.repeat_interleave(heads // kv_heads, dim=0)
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        causal = torch.ones(seq, seq, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        out = (scores.softmax(dim=-1) @ v).transpose(0, 1).reshape(seq, heads * head_dim)
        return F.linear(out, w[f"{p}.o_proj.weight"])

    def embeddings(self, prompt: MultimodalPrompt) -> torch.Tensor:
        """The prompt's input embeddings: token embeddings with the image and video features placed."""
        x = self.w["model.embed_tokens.weight"][torch.tensor(prompt.ids)].clone()
        if prompt.positions:
            features = self.vision_features(prompt.pixels)
            x[torch.tensor(prompt.positions)] = features.reshape(-1, features.shape[-1])
        return x

    def logits(self, embeds: torch.Tensor, last: int = 1) -> torch.Tensor:
        """(last, vocab) logits at the last `last` positions of a sequence of input embeddings."""
        c, w = self.config, self.w
        x = embeds
        head_dim = c.hidden_size // c.num_attention_heads
        theta = float(c.rope_parameters["rope_theta"])
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.arange(x.shape[0], dtype=torch.float64)[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}"
            x = x + self._attention(self._rms(x, f"{p}.input_layernorm.weight"), f"{p}.self_attn", cos, sin)
            h = self._rms(x, f"{p}.post_attention_layernorm.weight")
            h = F.silu(F.linear(h, w[f"{p}.mlp.gate_proj.weight"])) * F.linear(
                h, w[f"{p}.mlp.up_proj.weight"]
            )
            x = x + F.linear(h, w[f"{p}.mlp.down_proj.weight"])
        return F.linear(self._rms(x[-last:], "model.norm.weight"), w["lm_head.weight"])

    def generate_greedy(self, prompt: MultimodalPrompt, new_tokens: int) -> list[int]:
        """Greedy continuation; the vision tower runs once, the language model over the whole
        sequence at each step."""
        out: list[int] = []
        table = self.w["model.embed_tokens.weight"]
        with torch.no_grad():
            embeds = self.embeddings(prompt)
            for _ in range(new_tokens):
                out.append(int(self.logits(embeds)[-1].argmax()))
                embeds = torch.cat([embeds, table[out[-1]][None]])
        return out
