"""Random-weight checkpoints that vLLM serves like real ones.

No weights can be downloaded here, so tests and benchmarks run against
checkpoints built from a preset and a seed: real configs, real tensor names,
the real Qwen2.5 tokenizer, random bf16 weights. The same seed always gives
the same bytes, and a build is published by renaming a finished directory,
so an interrupted build never leaves something that looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.architectures import DEFAULT_ARCHITECTURE, ArchitectureWriter, get_architecture
from engine.audio_classifier import AUDIO_CLASSIFIER_PRESETS, write_audio_classifier_checkpoint
from engine.embedding import (
    EMBEDDING_ARCHITECTURE,
    EMBEDDING_PRESETS,
    package_model_dir,
    write_embedding_checkpoint,
)
from engine.presets import Preset, VisionLanguagePreset, get_preset
from engine.static_embedding import (
    STATIC_EMBEDDING_ARCHITECTURE,
    STATIC_EMBEDDING_PRESETS,
    write_static_checkpoint,
)
from engine.tokenizer import CHAT_TEMPLATE_RESOURCE, save_tokenizer
from engine.whisper import MODEL_FILE as WHISPER_MODEL_FILE
from engine.whisper import WHISPER_PRESETS, write_whisper_checkpoint
from engine.whisper_hf import WHISPER_HF_PRESETS, write_whisper_hf_checkpoint

__all__ = [
    "MANIFEST_NAME",
    "build_checkpoint",
    "checkpoint_is_complete",
    "default_architecture",
    "ensure_checkpoint",
    "read_manifest",
]

MANIFEST_NAME = "tantra_checkpoint.json"
"""Written last; lists every file with its size and hash."""

WHISPER_ARCHITECTURE = "whisper"
"""What a Whisper preset's manifest names as its architecture (whisper.cpp's ggml file)."""

HF_AUDIO_ARCHITECTURE = "hf-audio"
"""What a Hugging Face audio preset's manifest names as its architecture (written by save_pretrained:
a Whisper for vLLM's speech-to-text server, an audio classifier for the gateway's analysis)."""

VISION_LANGUAGE_ARCHITECTURE = "idefics3"
"""What a vision-language preset is built as unless told otherwise."""

_MANIFEST_FORMAT = 1
_PARTIAL_MARK = ".partial-"


def build_checkpoint(
    out_dir: str | os.PathLike[str],
    preset: str = "tiny",
    seed: int = 0,
    architecture: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Build a checkpoint at `out_dir`, replacing an earlier checkpoint there.

    Writes `model.safetensors`, `config.json`, `generation_config.json`, the
    tokenizer files (and whatever other files the architecture ships, such as a
    vision model's processor configs) and a manifest into a sibling temporary
    directory, then renames it into place. `cache_dir` is where the tokenizer
    build is cached.
    """
    out = Path(out_dir).absolute()
    arch_name = architecture or default_architecture(preset)
    model = _model_recipe(preset, arch_name)
    if out.exists() and read_manifest(out) is None and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a Tantra checkpoint; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_partials(out)
    partial = out.parent / f".{out.name}{_PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        if preset in EMBEDDING_PRESETS:
            write_embedding_checkpoint(partial, preset)
        elif preset in STATIC_EMBEDDING_PRESETS:
            write_static_checkpoint(partial, package_model_dir(STATIC_EMBEDDING_PRESETS[preset]))
        elif preset in AUDIO_CLASSIFIER_PRESETS:
            write_audio_classifier_checkpoint(partial, preset, seed)
        elif preset in WHISPER_HF_PRESETS:
            write_whisper_hf_checkpoint(partial, WHISPER_HF_PRESETS[preset], seed, cache_dir=cache_dir)
        elif model is None:
            _write_json(
                partial / "config.json", write_whisper_checkpoint(partial, preset, seed, cache_dir=cache_dir)
            )
        else:
            _write_model(partial, *model, seed, cache_dir)
        _write_json(
            partial / MANIFEST_NAME,
            {
                "format": _MANIFEST_FORMAT,
                "architecture": arch_name,
                "preset": preset,
                "seed": seed,
                "files": {name: _describe(partial / name) for name in _file_names(partial)},
            },
        )
        _fsync_dir(partial)
        _publish(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _model_recipe(preset: str, arch_name: str) -> tuple[Preset, ArchitectureWriter] | None:
    """The preset's shape and the architecture's writer (None for a Whisper or embedding preset:
    whisper.py and embedding.py write those), refusing a combination that cannot be built before
    anything is written."""
    if preset in EMBEDDING_PRESETS:
        if arch_name != EMBEDDING_ARCHITECTURE:
            raise ValueError(f"preset {preset} is a released embedding model; it takes no --architecture")
        return None
    if preset in STATIC_EMBEDDING_PRESETS:
        if arch_name != STATIC_EMBEDDING_ARCHITECTURE:
            raise ValueError(f"preset {preset} is a distilled static model; it takes no --architecture")
        return None
    if preset in WHISPER_PRESETS:
        if arch_name != WHISPER_ARCHITECTURE:
            raise ValueError(f"preset {preset} is a Whisper model; it takes no --architecture")
        return None
    if preset in AUDIO_CLASSIFIER_PRESETS or preset in WHISPER_HF_PRESETS:
        if arch_name != HF_AUDIO_ARCHITECTURE:
            raise ValueError(f"preset {preset} is a Hugging Face audio model; it takes no --architecture")
        return None
    shape = get_preset(preset)
    writer = get_architecture(arch_name)
    if isinstance(shape, VisionLanguagePreset) and not getattr(writer, "vision_language", False):
        raise ValueError(f"preset {preset} is a vision-language shape; architecture {arch_name} is text-only")
    return shape, writer


def _write_model(
    partial: Path,
    shape: Preset,
    writer: ArchitectureWriter,
    seed: int,
    cache_dir: str | os.PathLike[str] | None,
) -> None:
    """A vLLM model's files into `partial`: configs, random weights, tokenizer, the writer's extras."""
    config = writer.config(shape)
    # A vision-language config nests its text model's; the tokenizer and the stop
    # tokens are the text model's.
    text = config.get("text_config", config)
    _write_json(partial / "config.json", config)
    _write_json(partial / "generation_config.json", _generation_config(text))
    _write_weights(partial / "model.safetensors", writer.tensors(config, _generator(seed)))
    save_tokenizer(
        partial,
        model_max_length=int(text["max_position_embeddings"]),
        cache_dir=cache_dir,
        extra_special_tokens=getattr(writer, "added_tokens", ()),
        chat_template_resource=getattr(writer, "chat_template", CHAT_TEMPLATE_RESOURCE),
    )
    extra_files = getattr(writer, "extra_files", None)
    for name, payload in (extra_files(config) if extra_files else {}).items():
        _write_json(partial / name, payload)


def ensure_checkpoint(
    out_dir: str | os.PathLike[str],
    preset: str = "tiny",
    seed: int = 0,
    architecture: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Reuse a complete checkpoint built with the same recipe, else build it.

    Processes that ask for the same checkpoint at once (parallel test workers, two `make` targets)
    take turns on a lock file beside it: the first builds, the others find it built. Without the
    lock each built its own copy and the last one published replaced a checkpoint an engine might
    already be loading."""
    out = Path(out_dir).absolute()
    recipe = architecture or default_architecture(preset)
    if _matches(out, preset, seed, recipe):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        if _matches(out, preset, seed, recipe):
            return out
        return build_checkpoint(out, preset, seed, architecture, cache_dir=cache_dir)


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """An exclusive `flock` on `.<name>.lock` beside `out`, released when its process ends however
    it ends (stdlib `fcntl` rather than the filelock package: checkpoints are built on Linux only)."""
    with (out.parent / f".{out.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_architecture(preset: str) -> str:
    """What a preset is built as without `--architecture`: Whisper presets as whisper.cpp
    models, embedding presets as the sentence-transformers model they copy, vision-language presets
    as their own (Idefics3 unless they say), the rest as SpikingBrain's core."""
    if preset in EMBEDDING_PRESETS:
        return EMBEDDING_ARCHITECTURE
    if preset in STATIC_EMBEDDING_PRESETS:
        return STATIC_EMBEDDING_ARCHITECTURE
    if preset in WHISPER_PRESETS:
        return WHISPER_ARCHITECTURE
    if preset in AUDIO_CLASSIFIER_PRESETS or preset in WHISPER_HF_PRESETS:
        return HF_AUDIO_ARCHITECTURE
    shape = get_preset(preset)
    if isinstance(shape, VisionLanguagePreset):
        return shape.architecture
    return DEFAULT_ARCHITECTURE


def checkpoint_is_complete(path: str | os.PathLike[str], *, verify_hashes: bool = False) -> bool:
    """Whether `path` holds a whole checkpoint: manifest present, every file the right size.

    With `verify_hashes`, also re-hash every file (slow for large presets).
    """
    root = Path(path)
    manifest = read_manifest(root)
    if manifest is None:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or "config.json" not in files:
        return False
    if "model.safetensors" not in files and WHISPER_MODEL_FILE not in files:
        return False
    for name, meta in files.items():
        target = root / name
        if not target.is_file() or target.stat().st_size != meta.get("bytes"):
            return False
        if verify_hashes and _sha256(target) != meta.get("sha256"):
            return False
    return True


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint's manifest, or None when it is missing or unreadable."""
    try:
        data = json.loads((Path(path) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _matches(path: Path, preset: str, seed: int, architecture: str) -> bool:
    manifest = read_manifest(path)
    return (
        manifest is not None
        and manifest.get("preset") == preset
        and manifest.get("seed") == seed
        and manifest.get("architecture") == architecture
        and checkpoint_is_complete(path)
    )


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def _generation_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Token ids only: no sampling defaults.

    vLLM applies a checkpoint's sampling defaults to every request that does
    not set them; leaving them out keeps requests meaning what they say.
    The instruct models stop at either `<|im_end|>` or `<|endoftext|>`.
    """
    bos = config.get("bos_token_id")
    eos = config.get("eos_token_id")
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if isinstance(bos, int) and bos not in eos_ids:
        eos_ids.append(bos)
    return {"bos_token_id": bos, "eos_token_id": eos_ids, "pad_token_id": bos}


def _write_weights(path: Path, tensors: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path), metadata={"format": "pt"})


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _file_names(root: Path) -> list[str]:
    """Every file under `root`, as paths relative to it (an embedding model keeps modules in
    subdirectories such as `1_Pooling/`)."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def _describe(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Flush file contents before the rename publishes them."""
    for child in path.rglob("*"):
        if not child.is_file():
            continue
        with child.open("rb") as handle:
            os.fsync(handle.fileno())


def _publish(partial: Path, out: Path) -> None:
    """Rename the finished build into place.

    A directory cannot be renamed over a non-empty one, so an existing
    checkpoint is first moved aside, then removed. If another process
    published a complete checkpoint in the meantime, ours simply replaces it.
    """
    if out.exists() or out.is_symlink():
        retired = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(out, retired)
        shutil.rmtree(retired, ignore_errors=True)
    os.replace(partial, out)


def _sweep_stale_partials(out: Path) -> None:
    """Remove half-built siblings left by builds whose process is gone."""
    prefix = f".{out.name}{_PARTIAL_MARK}"
    for sibling in out.parent.glob(f"{prefix}*"):
        pid_text = sibling.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(sibling, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
