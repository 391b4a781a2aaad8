"""Model sizes for random-weight test checkpoints.

A preset names a shape, not an architecture: every registered architecture
reads the same fields, so `tiny` means "fast enough for tests" whether the
layers are Qwen2 or SpikingBrain's GLA/sliding-window hybrid. A
vision-language preset adds a vision tower's shape to a text one; only
vision-language architectures (`idefics3`) take it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PRESETS", "QWEN2_5_VOCAB_SIZE", "Preset", "VisionLanguagePreset", "get_preset"]

QWEN2_5_VOCAB_SIZE = 151936
"""Qwen2.5's small models pad the 151,665-token vocabulary to 151,936 rows."""


@dataclass(frozen=True)
class Preset:
    """The shape of a checkpoint; architectures derive their config from it."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int = QWEN2_5_VOCAB_SIZE
    tie_word_embeddings: bool = True
    init_std: float = 0.02
    """Std of the embedding init (the config's `initializer_range`); projections
    use 1/sqrt(fan_in) instead, see `engine.architectures.linear`."""
    explicit_head_dim: int | None = None
    """A head width independent of hidden_size (written to config.json as `head_dim`);
    only architectures whose config reads `head_dim` take such a preset (`gla_swa`)."""

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_attention_heads

    def __post_init__(self) -> None:
        if self.explicit_head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{self.name}: hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{self.name}: num_attention_heads must be a multiple of num_key_value_heads")


@dataclass(frozen=True)
class VisionLanguagePreset(Preset):
    """A text shape plus a SigLIP-style vision tower: square images cut into square patches,
    whose features are merged `scale_factor` x `scale_factor` (Idefics3's pixel shuffle)
    before they enter the prompt."""

    vision_hidden_size: int = 128
    vision_num_hidden_layers: int = 2
    vision_num_attention_heads: int = 2
    vision_intermediate_size: int = 256
    image_size: int = 256
    patch_size: int = 16
    scale_factor: int = 2
    architecture: str = "idefics3"
    """What the preset is built as without `--architecture`."""

    @property
    def image_tokens(self) -> int:
        """`<image>` tokens one image takes in the prompt (Idefics3's `image_seq_len`)."""
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size % (self.patch_size * self.scale_factor):
            raise ValueError(f"{self.name}: image_size must be a multiple of patch_size * scale_factor")
        if self.vision_hidden_size % self.vision_num_attention_heads:
            raise ValueError(
                f"{self.name}: vision_hidden_size must be a multiple of vision_num_attention_heads"
            )


# Head dim 64: vLLM's CPU kernels accept it, and it is what the hybrid
# (recurrent) kernels need at minimum; 2 layers keep startup short.
_TINY = Preset(
    name="tiny",
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=256,
    max_position_embeddings=4096,
)

PRESETS: dict[str, Preset] = {
    "tiny": _TINY,
    # About 290M parameters with head dim 128 like the 7B models: large
    # enough for throughput benchmarks to mean something on CPU.
    "small": Preset(
        name="small",
        hidden_size=1024,
        num_hidden_layers=12,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=2816,
        max_position_embeddings=32768,
    ),
    # SpikingBrain-7B's shape in everything but width and depth: 8 query heads
    # over 2 kv heads (groups of 4; the 7B has 28 over 4, groups of 7), head
    # dim 128, GLA and window layers alternating over 8 layers, the 4096-token
    # window (gla_swa's default for every preset but tiny) and Qwen2.5's
    # vocabulary; a 128-wide residual stream keeps float32 runs cheap.
    "7b-shaped": Preset(
        name="7b-shaped",
        hidden_size=128,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=256,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        explicit_head_dim=128,
    ),
    # About 1.2B parameters, 0.89B of them the decoder projections a W8A8 checkpoint quantizes
    # (74%; SpikingBrain-7B: 6.5B of 7.6B, 85%): `small`'s width and vocabulary, 32 layers and a
    # wider MLP. For the weight-format memory measurement (docs/quantization.md); no test or
    # `make checkpoint` builds it (2.4 GB in bf16).
    "medium": Preset(
        name="medium",
        hidden_size=1024,
        num_hidden_layers=32,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=8192,
        max_position_embeddings=32768,
    ),
    # `tiny`'s text shape behind a two-layer vision tower (head dim 64 on both
    # sides): 256 px images in 16 px patches, merged 2 x 2: 64 prompt tokens per image.
    "tiny-vl": VisionLanguagePreset(**{**asdict(_TINY), "name": "tiny-vl"}),
    # Long-VITA's published tiling (448 px tiles, 14 px patches, 2 x 2 pixel shuffle: 256 prompt
    # tokens per tile) behind `tiny`'s text shape and a two-layer InternViT: docs/vision.md.
    "tiny-long-vita": VisionLanguagePreset(
        **{
            **asdict(_TINY),
            "name": "tiny-long-vita",
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
            "image_size": 448,
            "patch_size": 14,
            "architecture": "long_vita",
        }
    ),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name, listing the valid names when it is unknown."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
