"""Checkpoint writers, one per model architecture, behind one small interface."""

from engine.architectures.base import ArchitectureWriter, normal, ones, zeros
from engine.architectures.registry import (
    DEFAULT_ARCHITECTURE,
    architecture_names,
    get_architecture,
    register_architecture,
)

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "ArchitectureWriter",
    "architecture_names",
    "get_architecture",
    "normal",
    "ones",
    "register_architecture",
    "zeros",
]
