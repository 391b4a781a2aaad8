"""Idefics3 (the `tiny-vl` checkpoint) for LoRA training on image-and-text chat examples.

The model is transformers' own `Idefics3ForConditionalGeneration`, whose module names are the
checkpoint's and vLLM's (`model.text_model.layers.N.self_attn.q_proj`; vLLM's Idefics3 has no
name mapper, and its `get_mm_mapping` puts LoRA on `model.text_model` only). So PEFT adapts the text
model's seven projections (`TEXT_PROJECTIONS`), never the vision tower's `q_proj`s, which vLLM would
not load.

Images are preprocessed by the checkpoint's own `Idefics3Processor` (transformers' PIL image
processor: torchvision is not installed), which is what vLLM calls for the served model: each
`<image>` the chat template wrote becomes the processor's block for that image
(`<fake_token_around_image><global-img>`, the `<image>` run, `<fake_token_around_image>`) and its
pixels go through the frozen tower and connector once per example; their features replace the
`<image>` tokens' embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor, Idefics3ForConditionalGeneration

from engine.finetune.data import SupervisedExample
from engine.finetune.images import ImageBlock, expand_image_tags, placed_embeddings

__all__ = ["TEXT_PROJECTIONS", "Idefics3Trainee"]

TEXT_PROJECTIONS = r"model\.text_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
"""PEFT's `target_modules` as a regular expression (matched against whole module names): the text
model's projections only; the SigLIP tower's attention has `q_proj`s too."""

_IMAGE_TAG = "<image>"
_AROUND = "<fake_token_around_image>"


class Idefics3Trainee(Idefics3ForConditionalGeneration):
    """transformers' Idefics3, float32, with what the trainer's multimodal path asks of a base:
    `see_images` (an example's images placed) and `embed` (features over token embeddings)."""

    processor: Any

    @classmethod
    def from_checkpoint(cls, root: Path) -> Idefics3Trainee:
        model = cls.from_pretrained(str(root), dtype=torch.float32)
        model.__dict__["processor"] = AutoProcessor.from_pretrained(str(root))
        return model.eval()

    def image_block(self, image: Any) -> tuple[list[int], dict[str, torch.Tensor]]:
        """The prompt tokens one image's `<image>` tag becomes, and its pixel inputs, as the
        processor makes them for vLLM (the block runs from the first `<fake_token_around_image>` to
        the last: whatever special tokens the tokenizer adds around a text are left out)."""
        inputs = self.processor(text=_IMAGE_TAG, images=[[image]], return_tensors="pt")
        ids = [int(token) for token in inputs["input_ids"][0]]
        around = int(self.processor.tokenizer.convert_tokens_to_ids(_AROUND))
        first = ids.index(around)
        last = len(ids) - 1 - ids[::-1].index(around)
        pixels = {
            "pixel_values": inputs["pixel_values"],
            "pixel_attention_mask": inputs["pixel_attention_mask"],
        }
        return ids[first : last + 1], pixels

    def image_features(self, pixels: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """(image tokens, hidden) connector outputs of the images in order, without gradient."""
        with torch.no_grad():
            features = [
                self.model.get_image_features(
                    pixel_values=p["pixel_values"].float(), pixel_attention_mask=p["pixel_attention_mask"]
                ).pooler_output
                for p in pixels
            ]
        joined = torch.cat(features)
        return joined.reshape(-1, joined.shape[-1])

    def embed(self, ids: torch.Tensor, features: Sequence[Any]) -> torch.Tensor:
        """(batch, seq, hidden) input embeddings: token embeddings with each row's features placed."""
        return placed_embeddings(self.get_input_embeddings(), ids, features)

    def see_images(self, line: dict[str, Any], example: SupervisedExample) -> SupervisedExample:
        """A chat example whose user turns carry images: each `<image>` tag expanded to the
        processor's block for its image (masked out of the loss), the features computed once."""
        tag = int(self.config.image_token_id)

        def block_of(image: Any) -> ImageBlock:
            block, inputs = self.image_block(image)
            return block, [offset for offset, token in enumerate(block) if token == tag], inputs

        expanded = expand_image_tags(line, example, tag, block_of)
        if expanded is None:
            return example
        features = (expanded.positions, self.image_features(expanded.pixels))
        return replace(example, input_ids=expanded.input_ids, labels=expanded.labels, features=features)
