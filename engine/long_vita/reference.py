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
from typing import Any

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
    videos: Sequence[Sequence[Image.Image | np.ndarray] | np.ndarray] = (),
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
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads or self.heads)
        self.head_dim = int(config.hidden_size) // self.heads
        rope: dict[str, Any] = dict(config.rope_parameters or {})
        self.rope_theta = float(rope.get("rope_theta", 1000000.0))

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

    def embeddings(self, prompt: MultimodalPrompt) -> torch.Tensor:
        """The prompt's input embeddings: token embeddings with the image and video features placed."""
        x = self.w["model.embed_tokens.weight"][torch.tensor(prompt.ids)].clone()
        if prompt.positions:
            features = self.vision_features(prompt.pixels)
            x[torch.tensor(prompt.positions)] = features.reshape(-1, features.shape[-1])
        return x

    # --- language model: Qwen2 -------------------------------------------------------------------
    def _rms(self, x: torch.Tensor, name: str) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.w[name] * (x * torch.rsqrt(variance + self.config.rms_norm_eps))

    def _rope(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        inv_freq = 1.0 / (self.rope_theta**exponents)
        angles = torch.arange(start, start + count, dtype=torch.float64)[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(self.dtype), angles.sin().to(self.dtype)

    def _project(self, x: torch.Tensor, name: str, heads: int) -> torch.Tensor:
        w = self.w
        out = F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])
        return out.view(x.shape[0], heads, self.head_dim).transpose(0, 1)

    def _attention(self, x: torch.Tensor, p: str, start: int, cache: list[torch.Tensor]) -> torch.Tensor:
        """Causal GQA attention of `x` (positions from `start` on) over the cached keys and its own;
        `cache` ([keys, values], empty at first) grows by this step's."""
        cos, sin = self._rope(start, x.shape[0])
        q = self._project(x, f"{p}.q_proj", self.heads)
        k = self._project(x, f"{p}.k_proj", self.kv_heads)
        v = self._project(x, f"{p}.v_proj", self.kv_heads)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if cache:
            k, v = torch.cat([cache[0], k], dim=1), torch.cat([cache[1], v], dim=1)
        cache[:] = [k, v]
        k = k.repeat_interleave(self.heads // self.kv_heads, dim=0)
        v = v.repeat_interleave(self.heads // self.kv_heads, dim=0)
        scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        future = torch.ones(x.shape[0], k.shape[1], dtype=torch.bool).triu(start + 1)
        scores = scores.masked_fill(future, float("-inf"))
        out = (scores.softmax(dim=-1) @ v).transpose(0, 1).reshape(x.shape[0], self.heads * self.head_dim)
        return F.linear(out, self.w[f"{p}.o_proj.weight"])

    def logits(
        self, embeds: torch.Tensor, start: int = 0, caches: list[list[torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """Logits at the last position of input embeddings placed from position `start` on;
        `caches` (one per layer) holds the keys and values of the positions before `start`."""
        w = self.w
        caches = caches if caches is not None else [[] for _ in range(self.config.num_hidden_layers)]
        x = embeds
        for i, cache in enumerate(caches):
            p = f"model.layers.{i}"
            x = x + self._attention(
                self._rms(x, f"{p}.input_layernorm.weight"), f"{p}.self_attn", start, cache
            )
            h = self._rms(x, f"{p}.post_attention_layernorm.weight")
            gate = F.silu(F.linear(h, w[f"{p}.mlp.gate_proj.weight"]))
            x = x + F.linear(gate * F.linear(h, w[f"{p}.mlp.up_proj.weight"]), w[f"{p}.mlp.down_proj.weight"])
        return F.linear(self._rms(x[-1:], "model.norm.weight"), w["lm_head.weight"])[0]

    def generate_greedy(self, prompt: MultimodalPrompt, new_tokens: int) -> list[int]:
        """Greedy continuation: the prompt once, then one token at a time over the cached keys."""
        out: list[int] = []
        caches: list[list[torch.Tensor]] = [[] for _ in range(self.config.num_hidden_layers)]
        with torch.no_grad():
            embeds = self.embeddings(prompt)
            position = 0
            while len(out) < new_tokens:
                out.append(int(self.logits(embeds, position, caches).argmax()))
                position += embeds.shape[0]
                embeds = self.w["model.embed_tokens.weight"][out[-1]][None]
        return out
