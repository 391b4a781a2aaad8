"""Cache bytes per sequence from the model config: what vLLM has to hold for one request.

Full attention keeps K and V for every token in every layer. SpikingBrain's
window layers keep at most `sliding_window + 1` tokens, and its GLA layers a
fixed state (one head-dim x head-dim float32 matrix per key/value head), so
its cache stops growing once the context passes the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["cache_bytes", "kv_bytes_per_token_per_layer"]


def kv_bytes_per_token_per_layer(config: Mapping[str, Any], dtype_bytes: int = 2) -> int:
    """K and V for one token in one attention layer."""
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return 2 * int(config["num_key_value_heads"]) * head_dim * dtype_bytes


def cache_bytes(config: Mapping[str, Any], context: int, dtype_bytes: int = 2, state_bytes: int = 4) -> int:
    """Bytes of KV cache plus recurrent state one sequence of `context` tokens needs (no block rounding)."""
    layers = int(config["num_hidden_layers"])
    per_token = kv_bytes_per_token_per_layer(config, dtype_bytes)
    if config.get("model_type") != "gla_swa":
        return layers * context * per_token
    window_layers = set(config.get("attn_layers", range(1, layers, 2)))
    kept = min(context, int(config["sliding_window"]) + 1)
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    state = int(config["num_key_value_heads"]) * head_dim * head_dim * state_bytes
    return len(window_layers) * kept * per_token + (layers - len(window_layers)) * state
