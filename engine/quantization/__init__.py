"""Quantized checkpoints in compressed-tensors format (int8 W8A8, 4-bit W4A16) for vLLM's CPU kernels.

Importing this package does not import torch; the conversion functions do.
"""

from engine.quantization.convert import (
    ensure_quantized,
    is_quantized_projection,
    quantize_checkpoint,
    quantized_scheme_of,
)
from engine.quantization.kernels import kernel_library, missing_kernel
from engine.quantization.schemes import SCHEMES, QuantScheme, get_scheme, quantization_config

__all__ = [
    "SCHEMES",
    "QuantScheme",
    "ensure_quantized",
    "get_scheme",
    "is_quantized_projection",
    "kernel_library",
    "missing_kernel",
    "quantization_config",
    "quantize_checkpoint",
    "quantized_scheme_of",
]
