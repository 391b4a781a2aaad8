"""`LongVITAForCausalLM` on vLLM: vLLM's InternViT, the original's resampler projector, vLLM's Qwen2.

The checkpoint loads unchanged: `model.vision_model.*` into vLLM's `InternVisionModel` (it imports
no torchvision), `model.vision_projection.*` into `ResamplerProjector` below, and the rest
(`model.*`, `lm_head`) into vLLM's `Qwen2ForCausalLM`, which also reads the text fields (and
any `rope_scaling`) from the same `long_vita` config, a `Qwen2Config`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsLoRA, SupportsMultiModal
from vllm.model_executor.models.intern_vit import InternVisionModel
from vllm.model_executor.models.module_mapping import MultiModelKeys
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, init_vllm_registered_model
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.sequence import IntermediateTensors

from engine.long_vita.config import IMAGE_TAG, VIDEO_TAG
from engine.long_vita.vllm_processor import LongVitaDummyInputs, LongVitaProcessingInfo, LongVitaProcessor

__all__ = ["LongVITAForCausalLM", "ResamplerProjector", "pixel_shuffle"]


def pixel_shuffle(x: torch.Tensor, scale_factor: float = 0.5) -> torch.Tensor:
    """The original's `pixel_shuffle` (InternVL's `ps_version: v2`): (n, w, h, c) -> (n, w/2, h/2, 4c)."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    return x.permute(0, 2, 1, 3).contiguous()


class ResamplerProjector(nn.Module):
    """The original's `resampler_projector.py`: pixel shuffle, LayerNorm (eps 1e-5, torch's default,
    as the original leaves it), Linear(4c -> c, no bias), GELU, Linear(c -> hidden, no bias)."""

    def __init__(self, vision_width: int, image_size: int, patch_size: int, hidden_size: int) -> None:
        super().__init__()
        self.side = image_size // patch_size
        self.pre_proj_layernorm = nn.LayerNorm(vision_width * 4)
        self.mlp = nn.Sequential(
            nn.Linear(vision_width * 4, vision_width, bias=False),
            nn.GELU(),
            nn.Linear(vision_width, hidden_size, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_shuffle(x.reshape(x.shape[0], self.side, self.side, -1))
        return self.mlp(self.pre_proj_layernorm(x.reshape(x.shape[0], -1, x.shape[-1])))


@MULTIMODAL_REGISTRY.register_processor(
    LongVitaProcessor, info=LongVitaProcessingInfo, dummy_inputs=LongVitaDummyInputs
)
class LongVITAForCausalLM(nn.Module, SupportsMultiModal, SupportsLoRA):
    """Images and video frames through InternViT and the projector, into Qwen2.5's prompt.

    LoRA (`--enable-lora`) adapts the language model only, as its Qwen2 (q/k/v and gate/up
    packed): an adapter's PEFT names (`model.layers.N.self_attn.q_proj`, as the trainer's
    `engine.long_vita.torch_model` gives them) map to `language_model.*` through
    `hf_to_vllm_mapper`. The vision tower and projector are left unadapted (`get_mm_mapping` names
    no punica wrapper for them, so vLLM skips their layers)."""

    packed_modules_mapping = {
        "qkv_proj": ["q_proj", "k_proj", "v_proj"],
        "gate_up_proj": ["gate_proj", "up_proj"],
    }

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.vision_model.": "vision_model.",
            "model.vision_projection.": "vision_projection.",
            "model.": "language_model.model.",
            "lm_head.": "language_model.lm_head.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_TAG
        if modality.startswith("video"):
            return VIDEO_TAG
        raise ValueError(f"Long-VITA takes images and videos, not {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        visual = PretrainedConfig()
        for key, value in config.visual.items():
            setattr(visual, key, value)
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.vision_model = InternVisionModel(
                visual, quant_config=None, prefix=f"{prefix}vision_model" if prefix else "vision_model"
            )
            self.vision_projection = ResamplerProjector(
                int(visual.hidden_size),
                int(visual.image_size),
                int(visual.patch_size),
                int(config.hidden_size),
            )
        with self._mark_language_model(vllm_config):
            self.language_model: Any = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config,
                prefix=f"{prefix}language_model" if prefix else "language_model",
                architectures=["Qwen2ForCausalLM"],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def _features(self, pixels: torch.Tensor, counts: Any) -> tuple[torch.Tensor, ...]:
        """(tiles, 3, 448, 448) -> one (tiles_of_item * 256, hidden) tensor per item."""
        dtype = self.vision_projection.pre_proj_layernorm.weight.dtype
        hidden = self.vision_model(pixel_values=pixels.to(dtype))[:, 1:, :]
        features = self.vision_projection(hidden)
        sizes = [int(n) for n in (counts.tolist() if isinstance(counts, torch.Tensor) else counts)]
        return tuple(chunk.reshape(-1, chunk.shape[-1]) for chunk in features.split(sizes))

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        embeddings: tuple[torch.Tensor, ...] = ()
        for key in kwargs:
            if key == "pixel_values_flat":
                embeddings += self._features(kwargs[key], kwargs["image_num_tiles"])  # type: ignore[arg-type]
            elif key == "pixel_values_videos":
                embeddings += self._features(kwargs[key], kwargs["video_num_frames"])  # type: ignore[arg-type]
        return embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        hidden: torch.Tensor | IntermediateTensors = self.language_model.model(
            input_ids=input_ids,
            positions=positions,
            intermediate_tensors=intermediate_tensors,
            inputs_embeds=inputs_embeds,
        )
        return hidden

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        logits: torch.Tensor | None = self.language_model.compute_logits(hidden_states)
        return logits

    def get_mm_mapping(self) -> MultiModelKeys:
        return MultiModelKeys.from_string_field(
            language_model="language_model", connector="vision_projection", tower_model="vision_model"
        )

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        loader = AutoWeightsLoader(self)
        return loader.load_weights(weights, mapper=self.hf_to_vllm_mapper)
