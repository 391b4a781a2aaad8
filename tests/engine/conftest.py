"""Shared fixtures for the engine tests: one tokenizer cache and one tiny checkpoint per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.checkpoint import build_checkpoint


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private tokenizer cache, so tests neither read nor write ~/.cache."""
    return tmp_path_factory.mktemp("tokenizer-cache")


@pytest.fixture(scope="session")
def built_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer_cache: Path) -> Path:
    """A Qwen2-architecture checkpoint: what these tests check is the builder, not SpikingBrain's layers."""
    return build_checkpoint(
        tmp_path_factory.mktemp("ck") / "tiny",
        "tiny",
        seed=0,
        architecture="qwen2",
        cache_dir=tokenizer_cache,
    )
