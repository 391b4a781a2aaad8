"""Fixtures for the Long-VITA tests: the random `tiny-long-vita` checkpoint and its reference.

The checkpoint is built under this checkout's own `.cache/long-vita/` (about 15 s, then reused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.checkpoint import ensure_checkpoint
from engine.launcher import EngineConfig, EngineProcess
from tests.servers import free_port, logged_engine

ROOT = Path(__file__).resolve().parents[2]
VITA = "tiny-long-vita"
# As `make run` serves it: vLLM's video loader takes one frame per second (docs/vision.md), here at
# most 8 (the engine's profiling decodes a dummy video of that many frames).
VIDEO_IO = '{"video": {"fps": 1, "num_frames": 8}}'


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


@pytest.fixture(scope="package")
def vita_engine(long_vita_checkpoint: Path) -> Iterator[EngineProcess]:
    """vLLM on tiny-long-vita as `make run` starts it (float32: the reference's precision), with LoRA
    on and runtime adapter loading, so the gateway tests and the LoRA test share one engine start (a
    LoRA engine answers as its base when no adapter is named). Package-scoped: it stops when
    tests/long_vita is done, not at the session's end (CI's memory ran out with it kept). Its log is
    .cache/test-engine-long-vita.log."""
    config = EngineConfig(
        model_dir=long_vita_checkpoint,
        served_model_name=VITA,
        port=free_port(),
        max_model_len=16384,
        dtype="float32",
        kv_cache_gib=0.25,
        extra_args=(
            *("--media-io-kwargs", VIDEO_IO),
            *("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8"),
        ),
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
    )
    with logged_engine(config, ROOT / ".cache" / "test-engine-long-vita.log") as process:
        yield process
