"""Give the C allocator's freed memory back to the operating system.

Loading a checkpoint frees many tensors of a few MiB (the safetensors reads, the int8 weights
oneDNN copies into its own packed layout); glibc keeps such freed blocks in its arenas for reuse
instead of unmapping them, so they stay resident for the engine's whole life. `malloc_trim(0)`
returns the free pages of every arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["TRIM_ENV", "return_freed_memory", "trim_after_load_enabled"]

TRIM_ENV = "TANTRA_POST_LOAD_TRIM"
"""`0` turns the post-load trim off (to measure what it returns); anything else leaves it on."""


def trim_after_load_enabled() -> bool:
    return os.environ.get(TRIM_ENV, "1") != "0"


def return_freed_memory() -> bool:
    """glibc's `malloc_trim(0)`; False where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
