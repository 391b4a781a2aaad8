"""Round-to-nearest weight quantization and int4 packing, in compressed-tensors' conventions.

Scales follow compressed-tensors' min/max observer for symmetric schemes:
`absmax / ((qmax - qmin) / 2)`, i.e. /127.5 for int8 and /7.5 for int4,
then values are rounded and clamped to [qmin, qmax]. The codes are computed
from the scale as stored (after its cast), so dequantizing what is on disk
gives exactly the grid the codes were chosen on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.quantization.schemes import QuantScheme

if TYPE_CHECKING:
    import torch

__all__ = ["compress_weight", "dequantize", "pack_int32", "quantize_rtn", "unpack_int32"]


def quantize_rtn(
    weight: torch.Tensor, scheme: QuantScheme, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (int8 tensor, [out, in]) and scales ([out, 1] or [out, in / group]) for a 2-D weight."""
    import torch

    out_features, in_features = weight.shape
    group = scheme.group_size or in_features
    if in_features % group:
        raise ValueError(f"input size {in_features} is not a multiple of the group size {group}")
    grouped = weight.float().reshape(out_features, in_features // group, group)
    absmax = grouped.abs().amax(dim=-1)
    scale = absmax / ((scheme.qmax - scheme.qmin) / 2)
    # An all-zero group would divide by zero; any positive scale codes it as 0.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(scale_dtype)
    codes = (grouped / scale.float().unsqueeze(-1)).round().clamp(scheme.qmin, scheme.qmax)
    return codes.reshape(out_features, in_features).to(torch.int8), scale


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 weight from codes [out, in] and scales [out, groups]."""
    out_features, in_features = codes.shape
    groups = scale.shape[1]
    grouped = codes.float().reshape(out_features, groups, in_features // groups)
    return (grouped * scale.float().unsqueeze(-1)).reshape(out_features, in_features)


def pack_int32(codes: torch.Tensor, num_bits: int) -> torch.Tensor:
    """Pack signed codes [out, in] into int32 words along the input dimension.

    Each code is offset to unsigned (`+ 2^(bits-1)`: vLLM's `uint4b8`) and
    word j of a row holds codes 8j..8j+7, the first in the lowest bits:
    compressed-tensors' `pack_to_int32` layout.
    """
    import torch

    per_word = 32 // num_bits
    rows, cols = codes.shape
    if cols % per_word:
        raise ValueError(f"{cols} columns do not fill whole int32 words of {per_word} codes")
    unsigned = (codes.to(torch.int32) + (1 << (num_bits - 1))).reshape(rows, cols // per_word, per_word)
    shifts = torch.arange(per_word, dtype=torch.int32) * num_bits
    # int64 accumulation, then wrap to int32: the top code's high bit is the sign bit.
    words = (unsigned.to(torch.int64) << shifts.to(torch.int64)).sum(dim=-1)
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def unpack_int32(words: torch.Tensor, num_bits: int, cols: int) -> torch.Tensor:
    """Inverse of `pack_int32`: signed int8 codes [out, cols]."""
    import torch

    per_word = 32 // num_bits
    shifts = torch.arange(per_word, dtype=torch.int64) * num_bits
    mask = (1 << num_bits) - 1
    unsigned = (words.to(torch.int64).unsqueeze(-1) >> shifts) & mask
    return (unsigned.reshape(words.shape[0], -1)[:, :cols] - (1 << (num_bits - 1))).to(torch.int8)


def compress_weight(
    module: str, weight: torch.Tensor, scheme: QuantScheme, serve_dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The on-disk tensors that replace `<module>.weight` under `scheme`.

    int-quantized: `weight` (int8) and `weight_scale` (float32, [out, 1]; vLLM
    holds it in float32). pack-quantized: `weight_packed` (int32),
    `weight_scale` (serving dtype, [out, in / group]; vLLM holds it in the
    activation dtype) and `weight_shape` (int64 [out, in]).
    """
    import torch

    if scheme.format == "int-quantized":
        codes, scale = quantize_rtn(weight, scheme, torch.float32)
        return {f"{module}.weight": codes, f"{module}.weight_scale": scale.contiguous()}
    if scheme.format == "pack-quantized":
        codes, scale = quantize_rtn(weight, scheme, serve_dtype)
        return {
            f"{module}.weight_packed": pack_int32(codes, scheme.num_bits),
            f"{module}.weight_scale": scale.contiguous(),
            f"{module}.weight_shape": torch.tensor(list(weight.shape), dtype=torch.int64),
        }
    raise ValueError(f"no writer for compression format {scheme.format!r}")
