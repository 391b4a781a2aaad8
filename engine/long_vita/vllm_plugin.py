"""vLLM plugin entry point: teaches vLLM and transformers the `long_vita` architecture.

Declared in pyproject under `vllm.general_plugins` (`long_vita`), so vLLM calls `register()` in
every process it starts. Like SpikingBrain's, it imports no model code: the model class is
registered by its "module:Class" path and loaded only when a checkpoint needs it.
"""

from __future__ import annotations

import contextlib

__all__ = ["ARCHITECTURE", "MODEL_CLASS_PATH", "register"]

ARCHITECTURE = "LongVITAForCausalLM"
MODEL_CLASS_PATH = "engine.long_vita.vllm_model:LongVITAForCausalLM"


def register() -> None:
    """Register the config with transformers and the model with vLLM; safe to call twice."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from engine.long_vita.config import MODEL_TYPE, LongVITAConfig

    with contextlib.suppress(ValueError):
        AutoConfig.register(MODEL_TYPE, LongVITAConfig)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)
