"""Long-VITA for LoRA training (issue 28, point 6): the reference's vision path, transformers' Qwen2.

The trainer (`engine.finetune.train`) adapts the language model only, as vLLM serves it
(`LongVITAForCausalLM` is `SupportsLoRA` on its Qwen2). So the model is transformers'
`Qwen2ForCausalLM` built on the checkpoint's `long_vita` config (a `Qwen2Config`) with the
checkpoint's `model.*` and `lm_head` tensors: its modules carry the published names
(`model.layers.N.self_attn.q_proj`), which PEFT writes as `base_model.model.model.layers...` and
vLLM's loader maps to its `language_model.*`. The vision encoder and projector are the plain-torch
reference's (`LongVitaReference.vision_features`), kept outside the module tree so PEFT never sees
them; they are frozen, so an example's image features are computed once.

An example's images are preprocessed as serving preprocesses them: `reference.expand_prompt`
(the original's tiling, `tiling.tile_image`) replaces each `<image>` tag the chat template wrote
with the same tokens vLLM's processor writes (the greedy-equality tests check that), and the
features go where the context tokens are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, Qwen2ForCausalLM

from engine.finetune.data import SupervisedExample
from engine.finetune.images import (
    ImageBlock,
    decode_image,
    expand_image_tags,
    images_of,
    placed_embeddings,
)
from engine.long_vita.config import IMAGE_TAG, MODEL_TYPE, LongVITAConfig, token_id
from engine.long_vita.reference import LongVitaReference, MultimodalPrompt, expand_prompt

__all__ = ["LongVitaTorchForCausalLM", "decode_image", "images_of"]

_VISION_PREFIXES = ("model.vision_model.", "model.vision_projection.")


class LongVitaTorchForCausalLM(Qwen2ForCausalLM):
    """Qwen2.5 with the checkpoint's language weights; images through the reference's vision path."""

    vision: LongVitaReference

    def __init__(self, config: LongVITAConfig, vision: LongVitaReference) -> None:
        super().__init__(config)
        # Not a submodule: PEFT adapts the language model's projections only.
        self.__dict__["vision"] = vision

    @classmethod
    def from_checkpoint(cls, root: Path) -> LongVitaTorchForCausalLM:
        """Float32, as the trainer runs; also registers `long_vita` with transformers' AutoConfig
        (so AutoTokenizer reads the checkpoint without remote code)."""
        with contextlib.suppress(ValueError):  # already registered
            AutoConfig.register(MODEL_TYPE, LongVITAConfig)
        config = LongVITAConfig(**json.loads((root / "config.json").read_text()))
        weights: dict[str, torch.Tensor] = {}
        for shard in sorted(root.glob("*.safetensors")):
            weights.update(load_file(str(shard)))
        vision = {k: v for k, v in weights.items() if k.startswith(_VISION_PREFIXES)}
        model = cls(config, LongVitaReference(config, vision))
        language = {k: v.float() for k, v in weights.items() if k not in vision}
        model.load_state_dict(language, strict=True)
        return model.float().eval()

    def place_features(self, prompt: MultimodalPrompt) -> torch.Tensor | None:
        """The (features, hidden) vision features of a prompt's tiles and frames, without gradient."""
        if not prompt.positions:
            return None
        with torch.no_grad():
            features = self.vision.vision_features(prompt.pixels)
        return features.reshape(-1, features.shape[-1])

    def embed(self, ids: torch.Tensor, features: Sequence[Any]) -> torch.Tensor:
        """(batch, seq, hidden) input embeddings: token embeddings with each row's features placed."""
        return placed_embeddings(self.get_input_embeddings(), ids, features)

    def see_images(self, line: dict[str, Any], example: SupervisedExample) -> SupervisedExample:
        """A chat example whose user turns carry images: each `<image>` tag expanded to its image's
        tokens as `expand_prompt` expands it (labels ignored there), the features computed once and
        kept with the example."""
        tag = token_id(IMAGE_TAG)

        def block_of(image: Any) -> ImageBlock:
            block = expand_prompt([tag], [image], tile_tokens=self.config.tile_tokens)
            return block.ids, list(block.positions), block.pixels

        expanded = expand_image_tags(line, example, tag, block_of)
        if expanded is None:
            return example
        prompt = MultimodalPrompt(expanded.input_ids, torch.cat(expanded.pixels), expanded.positions)
        features = (expanded.positions, self.place_features(prompt))
        return replace(example, input_ids=expanded.input_ids, labels=expanded.labels, features=features)

    def greedy(self, prompt: MultimodalPrompt, new_tokens: int) -> list[int]:
        """Greedy continuation by re-reading the sequence (no cache), float32: the test's oracle for
        an adapter served by vLLM (adapted when PEFT's adapter is active)."""
        features = self.place_features(prompt)
        placed = None if features is None else (list(prompt.positions), features)
        ids = list(prompt.ids)
        with torch.no_grad():
            for _ in range(new_tokens):
                embeds = self.embed(torch.tensor([ids]), [placed])
                ids.append(int(self(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1].argmax()))
        return ids[len(prompt.ids) :]
