"""Which quantized schemes this machine's vLLM can serve: vLLM 0.32's CPU wheel loads one of three
kernel libraries by the CPU's instruction sets (AVX-512 with bf16, AVX-512, AVX2), and its AVX2
library has no 4-bit kernel (`cpu_gemm_wna16`), so a W4A16 checkpoint fails at its first forward
pass there. W8A8 runs on oneDNN, present in all three."""

from __future__ import annotations

import functools

KERNELS: dict[str, str] = {"w8a8": "onednn_scaled_mm", "w4a16": "cpu_gemm_wna16"}
"""The vLLM custom op each scheme's CPU linear layers call."""


@functools.cache
def missing_kernel(scheme: str) -> str | None:
    """The op `scheme` needs that this machine's vLLM kernels lack, or None when it can be served
    (imports torch and vLLM's kernels, once)."""
    import torch
    from vllm.platforms import current_platform

    current_platform.import_kernels()
    op = KERNELS[scheme.lower()]
    return None if hasattr(torch.ops._C, op) else op


@functools.cache
def kernel_library() -> str:
    """Which of vLLM's CPU kernel libraries this machine loads, as vLLM chooses: `avx512_bf16`,
    `avx512` or `avx2` (whose int8 GEMM has neither AVX-512 nor VNNI: W8A8 agrees less with bf16)."""
    import torch

    if not torch.cpu._is_avx512_supported():
        return "avx2"
    return "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else "avx512"
