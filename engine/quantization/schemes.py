"""The quantization schemes Tantra writes, and the compressed-tensors config that names them.

Both are compressed-tensors formats because that is the one quantized format
vLLM's CPU backend runs through real low-bit kernels on x86:

- `w8a8`: int8 weights, one scale per output channel, activations quantized
  per token at run time (`int-quantized`). vLLM runs it with
  `CPUInt8ScaledMMLinearKernel` (oneDNN int8 GEMM; sgl's AMX kernel where
  the CPU has AMX).
- `w4a16`: 4-bit symmetric weights in groups of 128 along the input,
  activations left in bf16 (`pack-quantized`). vLLM runs it with
  `CPUWNA16LinearKernel` (`cpu_gemm_wna16`), which reads GPTQ-style uint4b8
  codes; AWQ and GPTQ checkpoints reach the same kernel, so one
  compressed-tensors writer covers both bit widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMES", "QuantScheme", "get_scheme", "quantization_config"]


@dataclass(frozen=True)
class QuantScheme:
    """One weight format: bits, grouping, and its compressed-tensors names."""

    name: str
    preset: str
    """compressed-tensors' preset scheme (`W8A8`, `W4A16`): the config groups come from it."""
    format: str
    """compressed-tensors `CompressionFormat` value: how tensors are laid out on disk."""
    num_bits: int
    group_size: int | None
    """Input columns per weight scale; None means one scale per output channel."""

    @property
    def qmin(self) -> int:
        return -(1 << (self.num_bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.num_bits - 1)) - 1


SCHEMES: dict[str, QuantScheme] = {
    "w8a8": QuantScheme("w8a8", "W8A8", "int-quantized", num_bits=8, group_size=None),
    "w4a16": QuantScheme("w4a16", "W4A16", "pack-quantized", num_bits=4, group_size=128),
}


def get_scheme(name: str) -> QuantScheme:
    """A scheme by name, listing the valid names when it is unknown."""
    try:
        return SCHEMES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown quantization scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        ) from None


def quantization_config(scheme: QuantScheme, ignore: Sequence[str]) -> dict[str, Any]:
    """The `quantization_config` block of config.json, built by compressed-tensors' own models.

    Every `Linear` is targeted; `ignore` lists the linear modules left in
    bf16 (lm_head, SpikingBrain's GLA gate).
    """
    from compressed_tensors.quantization import (
        QuantizationConfig,
        QuantizationStatus,
        preset_name_to_scheme,
    )

    config = QuantizationConfig(
        config_groups={"group_0": preset_name_to_scheme(scheme.preset, ["Linear"])},
        format=scheme.format,
        quantization_status=QuantizationStatus.COMPRESSED,
        ignore=list(ignore),
    )
    payload: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    weights = payload["config_groups"]["group_0"]["weights"]
    if weights.get("group_size") != scheme.group_size or weights.get("num_bits") != scheme.num_bits:
        raise AssertionError(f"compressed-tensors preset {scheme.preset} no longer matches {scheme.name}")
    return payload
