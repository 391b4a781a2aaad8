"""vLLM plugin entry point: teaches vLLM and transformers the `gla_swa` architecture.

Declared in pyproject under `vllm.general_plugins`, so vLLM calls `register()`
in every process it starts (API server, engine core, workers). It imports
neither torch-heavy model code nor vLLM's model executor: the model class is
registered by its "module:Class" path and loaded only when a checkpoint needs it.
"""

from __future__ import annotations

import contextlib

__all__ = ["ARCHITECTURE", "GLA_OP", "MODEL_CLASS_PATH", "register"]

ARCHITECTURE = "GLAswaForCausalLM"
MODEL_CLASS_PATH = "engine.spikingbrain.vllm_model:GLAswaForCausalLM"
GLA_OP = "spikingbrain::gla_attention"
"""The GLA layer's custom op (engine/spikingbrain/vllm_gla.py), by the name vLLM's graph splitter matches."""


def register() -> None:
    """Register the config with transformers and the model with vLLM; safe to call twice."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from engine.spikingbrain.config import MODEL_TYPE, GLAswaConfig

    # A second call (two entry points, or a test calling it in-process) finds it registered.
    with contextlib.suppress(ValueError):
        AutoConfig.register(MODEL_TYPE, GLAswaConfig)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)
    _split_graphs_at_gla()


def _split_graphs_at_gla() -> None:
    """Make the GLA op one of the ops vLLM's piecewise CUDA graphs are split at, like its attention.

    Mixed prefill/decode steps then run the op eagerly between the captured pieces, where it may
    read the step's lengths on the host. vLLM has no public hook for this: its default
    `splitting_ops` are a copy of `CompilationConfig._attention_ops`, taken when a config is built,
    which happens after plugins load. An operator's own `splitting_ops` replaces the default and
    must then name the op too (docs/spikingbrain.md).
    """
    from vllm.config.compilation import CompilationConfig

    if GLA_OP not in CompilationConfig._attention_ops:
        CompilationConfig._attention_ops.append(GLA_OP)
