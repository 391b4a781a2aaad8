"""Turn a bf16 checkpoint directory into a compressed-tensors one that vLLM serves as is.

Works on any checkpoint whose decoder projections follow the Qwen2 naming
(`model.layers.N.{self_attn,attn,mlp}.{q,k,v,o,gate,up,down}_proj.weight`):
Qwen2 and SpikingBrain's `gla_swa`, in either published layout (W8ASpike's
grid is applied first, so its scales are consumed, not copied). Everything
else (embeddings, norms, biases, lm_head, the GLA gate `gk_proj`) stays as it
was: the gate feeds a log-sigmoid divided by 16 and is tiny, lm_head and the
embeddings set the logits directly. The result is published like a built
checkpoint: written aside, then renamed into place with a manifest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.checkpoint import MANIFEST_NAME, read_manifest
from engine.checkpoint import _describe as describe_file
from engine.checkpoint import _fsync_dir as fsync_dir
from engine.checkpoint import _publish as publish
from engine.quantization.schemes import QuantScheme, get_scheme, quantization_config
from engine.quantization.tensors import compress_weight

if TYPE_CHECKING:
    import torch

__all__ = ["ensure_quantized", "is_quantized_projection", "quantize_checkpoint", "quantized_scheme_of"]

_PROJECTION = re.compile(
    r"^(model\.layers\.\d+\.(?:self_attn|attn|mlp)\.(?:q|k|v|o|gate|up|down)_proj)\.weight$"
)
_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|embeddings|wte)$")
_WEIGHT_FILES = re.compile(r"(\.safetensors|\.safetensors\.index\.json|\.bin|\.pt|\.pth)$")
_SHARD_BYTES = 4 << 30
"""Start a new output shard past this many bytes, so a 7B never sits whole in memory."""


def is_quantized_projection(name: str) -> bool:
    """Whether a tensor is a decoder projection weight this converter quantizes."""
    return _PROJECTION.match(name) is not None


def quantize_checkpoint(
    source: str | os.PathLike[str], out: str | os.PathLike[str], scheme: str | QuantScheme = "w8a8"
) -> Path:
    """Write `source` quantized with `scheme` to `out`, replacing an earlier one there."""
    src = Path(source).absolute()
    dst = Path(out).absolute()
    plan = get_scheme(scheme) if isinstance(scheme, str) else scheme
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in config:
        raise ValueError(f"{src} is already quantized ({config['quantization_config'].get('format')})")
    if dst.exists() and read_manifest(dst) is None and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} exists and is not a Tantra checkpoint; refusing to replace it")
    serve_dtype = _torch_dtype(config.get("torch_dtype", "bfloat16"))

    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.parent / f".{dst.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        ignore = _write_weights(partial, _source_tensors(src), plan, serve_dtype)
        config["quantization_config"] = quantization_config(plan, ignore)
        _write_json(partial / "config.json", config)
        _copy_other_files(src, partial)
        source_manifest = read_manifest(src) or {}
        kept = ("format", "architecture", "preset", "seed")
        manifest: dict[str, Any] = {key: source_manifest[key] for key in kept if key in source_manifest}
        manifest["quantization"] = {"scheme": plan.name, "source": str(src), "source_id": _source_id(src)}
        manifest["files"] = {p.name: describe_file(p) for p in sorted(partial.iterdir()) if p.is_file()}
        _write_json(partial / MANIFEST_NAME, manifest)
        fsync_dir(partial)
        publish(partial, dst)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dst


def ensure_quantized(
    source: str | os.PathLike[str], out: str | os.PathLike[str], scheme: str = "w8a8"
) -> Path:
    """Reuse `out` if it holds `source` quantized with `scheme` (and `source` is unchanged), else write it."""
    src, dst = Path(source).absolute(), Path(out).absolute()
    manifest = read_manifest(dst)
    if manifest is not None and _files_present(dst, manifest):
        recipe = manifest.get("quantization") or {}
        if recipe.get("scheme") == get_scheme(scheme).name and recipe.get("source_id") == _source_id(src):
            return dst
    return quantize_checkpoint(src, dst, scheme)


def quantized_scheme_of(checkpoint: str | os.PathLike[str]) -> str | None:
    """The Tantra scheme a checkpoint was quantized with (from its manifest), or None."""
    manifest = read_manifest(Path(checkpoint)) or {}
    scheme = (manifest.get("quantization") or {}).get("scheme")
    return scheme if isinstance(scheme, str) else None


# -- weights ------------------------------------------------------------------


def _source_tensors(src: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of the source, shard by shard, with W8ASpike's grid already applied."""
    from safetensors import safe_open

    from engine.spikingbrain.weights import checkpoint_tensor_names, quantized_weight_names
    from engine.spikingbrain.weights import with_weight_quantizers_applied as on_grid

    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{src} has no *.safetensors files")

    def read() -> Iterator[tuple[str, torch.Tensor]]:
        for shard in shards:
            with safe_open(str(shard), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    yield name, handle.get_tensor(name)

    return on_grid(read(), quantized_weight_names(checkpoint_tensor_names(src)))


def _write_weights(
    out: Path, tensors: Iterator[tuple[str, torch.Tensor]], scheme: QuantScheme, serve_dtype: torch.dtype
) -> list[str]:
    """Write the converted tensors in shards; return the linear modules left unquantized."""
    from safetensors.torch import save_file

    ignore: set[str] = {"lm_head"}
    shard_names: list[list[str]] = []
    current: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        shard_names.append(sorted(current))
        save_file(current, str(out / f".shard-{len(shard_names)}"), metadata={"format": "pt"})
        current.clear()

    for name, tensor in tensors:
        match = _PROJECTION.match(name)
        if match:
            converted = compress_weight(match.group(1), tensor, scheme, serve_dtype)
        else:
            converted = {name: tensor.contiguous()}
            module = name.removesuffix(".weight")
            if name.endswith(".weight") and tensor.dim() == 2 and not _EMBEDDING.search(module):
                ignore.add(module)
        nbytes = sum(t.numel() * t.element_size() for t in converted.values())
        if current and size + nbytes > _SHARD_BYTES:
            flush()
            size = 0
        current.update(converted)
        size += nbytes
    flush()

    if len(shard_names) == 1:
        (out / ".shard-1").rename(out / "model.safetensors")
        return sorted(ignore)
    weight_map: dict[str, str] = {}
    total = 0
    for index, names in enumerate(shard_names, start=1):
        final = f"model-{index:05d}-of-{len(shard_names):05d}.safetensors"
        (out / f".shard-{index}").rename(out / final)
        weight_map.update(dict.fromkeys(names, final))
        total += (out / final).stat().st_size
    index_payload = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _write_json(out / "model.safetensors.index.json", index_payload)
    return sorted(ignore)


# -- files ----------------------------------------------------------------------


def _copy_other_files(src: Path, out: Path) -> None:
    """Tokenizer, generation config, chat template, ...: everything but weights, config and manifest."""
    for path in sorted(src.iterdir()):
        if path.name in ("config.json", MANIFEST_NAME) or _WEIGHT_FILES.search(path.name):
            continue
        if path.is_dir():
            shutil.copytree(path, out / path.name)
        elif path.is_file():
            shutil.copy2(path, out / path.name)


def _source_id(src: Path) -> str:
    """What identifies the source weights: the manifest's hashes if Tantra built it, else sizes and times."""
    manifest = read_manifest(src) or {}
    files = manifest.get("files")
    if isinstance(files, Mapping):
        hashes = {n: m.get("sha256") for n, m in files.items() if n.endswith(".safetensors")}
        if hashes:
            return json.dumps(hashes, sort_keys=True)
    stats = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(src.glob("*.safetensors"))}
    return json.dumps(stats, sort_keys=True)


def _files_present(root: Path, manifest: Mapping[str, Any]) -> bool:
    files = manifest.get("files")
    if not isinstance(files, Mapping) or "config.json" not in files:
        return False
    return all((root / n).is_file() and (root / n).stat().st_size == m.get("bytes") for n, m in files.items())


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"config.json torch_dtype {name!r} is not a floating-point torch dtype")
    return dtype


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
