"""The `gla_swa` model configuration, as SpikingBrain-7B publishes it.

The constructor takes exactly the keys of the published `config.json`
(BICLab/SpikingBrain-7B, `hf_7B_model/` and `W8ASpike/`), with the same
defaults, so a real checkpoint loads unchanged and the random test
checkpoints are shaped like the real one.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["GATE_LOGIT_NORMALIZER", "GATE_LOW_RANK_DIM", "MODEL_TYPE", "GLAswaConfig"]

MODEL_TYPE = "gla_swa"

# The GLA layer's constructor defaults in the published code: the forget gate
# is `logsigmoid(gk) / 16`, and `gk` comes through a rank-16 bottleneck. The
# published HF config omits them; the published vLLM plugin's config carries
# them as `gate_logit_normalizer` / `gate_low_rank_dim`, and so does this one.
GATE_LOGIT_NORMALIZER = 16
GATE_LOW_RANK_DIM = 16


class GLAswaConfig(PretrainedConfig):
    """Hybrid of gated linear attention (GLA) and sliding-window attention.

    Layers listed in `attn_layers` are softmax attention over a window of
    `sliding_window` earlier tokens plus the token itself; all other layers
    are GLA with a fixed-size recurrent state.
    """

    model_type = MODEL_TYPE
    keys_to_ignore_at_inference = ["past_key_values"]

    # Long: transformers' PretrainedConfig contract, one keyword and one line per config.json field.
    def __init__(  # noqa: PLR0913
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        num_hidden_layers: int = 28,
        attn_layers: list[int] | None = None,
        attn_mode: str = "chunk",
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        use_short_conv: bool = False,
        conv_size: int = 4,
        intermediate_size: int = 18944,
        hidden_act: str = "swish",
        max_position_embeddings: int = 4096 * 32,
        sliding_window: int = 4096,
        elementwise_affine: bool = True,
        norm_eps: float = 1e-6,
        rope_theta: float = 1000000.0,
        attention_dropout: float = 0.0,
        use_cache: bool = True,
        pad_token_id: int | None = None,
        bos_token_id: int = 151643,
        eos_token_id: int = 151643,
        tie_word_embeddings: bool = False,
        initializer_range: float = 0.02,
        fuse_cross_entropy: bool = True,
        head_dim: int | None = None,
        gate_logit_normalizer: float = GATE_LOGIT_NORMALIZER,
        gate_low_rank_dim: int = GATE_LOW_RANK_DIM,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        # The published code derives the odd layers; the published config
        # lists them. Honour an explicit list, default to the derivation.
        self.attn_layers = list(range(1, num_hidden_layers, 2)) if attn_layers is None else list(attn_layers)
        self.attn_mode = attn_mode
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.use_short_conv = use_short_conv
        self.conv_size = conv_size
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.sliding_window = sliding_window
        self.elementwise_affine = elementwise_affine
        self.norm_eps = norm_eps
        self.rope_theta = rope_theta
        self.attention_dropout = attention_dropout
        self.use_cache = use_cache
        self.initializer_range = initializer_range
        self.fuse_cross_entropy = fuse_cross_entropy
        # The published layers derive head_dim = hidden_size / heads (and assert
        # the division is exact); a config may set it instead, as Qwen3's does,
        # and then q/k/v/o are heads x head_dim wide whatever hidden_size is.
        self.head_dim = _head_dim(hidden_size, num_attention_heads, self.num_key_value_heads, head_dim)
        self.gate_logit_normalizer, self.gate_low_rank_dim = _gate(gate_logit_normalizer, gate_low_rank_dim)
        super().__init__(**kwargs)
        # Set after the base class, which (depending on the transformers
        # version) either ignores these or resets them to its own defaults.
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings

    def is_window_layer(self, layer_idx: int) -> bool:
        """True for sliding-window softmax attention, False for GLA."""
        return layer_idx in self.attn_layers


def _head_dim(hidden_size: int, heads: int, kv_heads: int, head_dim: int | None) -> int:
    """Per-head width, shared by queries, keys, values and the GLA state; checked."""
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        raise ValueError(
            f"num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
        )
    if head_dim is None:
        if hidden_size % heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({heads}): "
                "the published layers derive head_dim = hidden_size / heads; set head_dim explicitly"
            )
        head_dim = hidden_size // heads
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim ({head_dim}) must be a positive even number (rotary embedding halves)")
    return head_dim


def _gate(normalizer: float, rank: int) -> tuple[float, int]:
    if normalizer <= 0 or rank <= 0:
        raise ValueError(
            f"gate_logit_normalizer ({normalizer}) and gate_low_rank_dim ({rank}) must be positive"
        )
    return normalizer, rank
