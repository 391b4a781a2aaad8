"""vLLM plugin entry point: teaches vLLM and transformers the `gla_swa` architecture.

Declared in pyproject under `vllm.general_plugins`, so vLLM calls `register()`
in every process it starts (API server, engine core, workers). It imports
neither torch-heavy model code nor vLLM's model executor: the model class is
registered by its "module:Class" path and loaded only when a checkpoint needs it.
"""

from __future__ import annotations

import contextlib

__all__ = ["ARCHITECTURE", "MODEL_CLASS_PATH", "register"]

ARCHITECTURE = "GLAswaForCausalLM"
MODEL_CLASS_PATH = "engine.spikingbrain.vllm_model:GLAswaForCausalLM"


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
