"""Fixtures for the Long-VITA tests: the random `tiny-long-vita` checkpoint and its reference.

The checkpoint is built under this checkout's own `.cache/long-vita/` (about 15 s, then reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.checkpoint import ensure_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def long_vita_checkpoint() -> Path:
    return ensure_checkpoint(
        ROOT / ".cache" / "long-vita" / "tiny-long-vita", "tiny-long-vita", 0, "long_vita"
    )


@pytest.fixture(scope="session")
def long_vita_reference(long_vita_checkpoint: Path) -> Any:
    from engine.long_vita.reference import LongVitaReference

    return LongVitaReference.from_pretrained(long_vita_checkpoint)


@pytest.fixture(scope="session")
def long_vita_tokenizer(long_vita_checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    from engine.long_vita.vllm_plugin import register

    register()
    return AutoTokenizer.from_pretrained(long_vita_checkpoint)
