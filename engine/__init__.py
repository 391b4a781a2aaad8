"""Tantra's engine side: test checkpoints, the Qwen2.5 tokenizer and the vLLM launcher.

Importing this package is cheap: torch, transformers and vLLM are imported
only inside the functions that need them.
"""

from engine.architectures import (
    ArchitectureWriter,
    architecture_names,
    get_architecture,
    register_architecture,
)
from engine.checkpoint import build_checkpoint, checkpoint_is_complete, ensure_checkpoint, read_manifest
from engine.launcher import EngineConfig, EngineProcess, EngineStartError
from engine.presets import PRESETS, Preset, get_preset
from engine.tokenizer import build_tokenizer, save_tokenizer

__all__ = [
    "PRESETS",
    "ArchitectureWriter",
    "EngineConfig",
    "EngineProcess",
    "EngineStartError",
    "Preset",
    "architecture_names",
    "build_checkpoint",
    "build_tokenizer",
    "checkpoint_is_complete",
    "ensure_checkpoint",
    "get_architecture",
    "get_preset",
    "read_manifest",
    "register_architecture",
    "save_tokenizer",
]
