"""What an architecture writer provides, and the init helpers writers share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from engine.presets import Preset

__all__ = ["ArchitectureWriter", "linear", "normal", "ones", "zeros"]


@runtime_checkable
class ArchitectureWriter(Protocol):
    """Turns a preset into a Hugging Face config and random weights.

    `config` returns the exact `config.json` content (including
    `architectures`, `model_type` and `torch_dtype`); `tensors` returns every
    tensor of `model.safetensors`, named as the published checkpoints name
    them. Draw all randomness from `generator`, in a fixed order, so a seed
    always gives the same bytes.

    Optional, read with `getattr`: `vision_language` (True: the writer takes
    vision-language presets, and only those), `added_tokens`, tokens the
    tokenizer adds after Qwen2.5's own (Idefics3's `<image>`), `chat_template`,
    the packaged template the tokenizer ships (`engine.tokenizer`'s resource
    names), and `extra_files(config)`, other JSON files of the checkpoint by
    name (a processor's configs).
    """

    name: str

    def config(self, preset: Preset) -> dict[str, Any]: ...

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]: ...


def normal(shape: Sequence[int], generator: torch.Generator, std: float) -> torch.Tensor:
    """A bf16 tensor drawn from N(0, std^2).

    Sampled in float32 and then rounded, because bf16 sampling is not
    supported by every torch CPU kernel and float32 draws are reproducible.
    """
    import torch

    sample = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    return (sample * std).to(torch.bfloat16).contiguous()


def linear(out_features: int, in_features: int, generator: torch.Generator) -> torch.Tensor:
    """A projection weight with std 1/sqrt(fan_in) (LeCun init).

    With every weight at a flat std of 0.02, a tied-embedding model's residual
    stream stays dominated by the input embedding and greedy decoding just
    repeats the last token. Fan-in scaling keeps each layer's output at unit
    scale, so generations depend on the context and vary like text should.
    """
    return normal((out_features, in_features), generator, in_features**-0.5)


def ones(shape: Sequence[int]) -> torch.Tensor:
    """Norm weights start at one, as in a freshly initialised model."""
    import torch

    return torch.ones(tuple(shape), dtype=torch.bfloat16)


def zeros(shape: Sequence[int]) -> torch.Tensor:
    """Biases start at zero."""
    import torch

    return torch.zeros(tuple(shape), dtype=torch.bfloat16)
