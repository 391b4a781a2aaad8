"""The `7b-shaped` preset's fixed workload and the reference's answers to it.

Shared by the real-shape tests (tests/spikingbrain/test_real_shapes.py) and `make gpu-check`
(scripts/gpu_check.py), so both compare vLLM with the same continuations: the prefixes of one
random 10,000-token sequence, of lengths 1 to 10,000 (straddling the 4096-token window), each
continued greedily by the reference. The reference reads the sequence one token at a time (3 to 12
minutes of one core); its answers are kept under a key of the checkpoint's bytes, the workload and
the reference's own source, so they are computed once per change.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from engine.spikingbrain.reference import Continuation

__all__ = [
    "LENGTHS",
    "MAX_MODEL_LEN",
    "NEW_TOKENS",
    "PRESET",
    "SEQUENCE_LENGTH",
    "answers_file_name",
    "compute_answers",
    "real_shape_sequence",
]

PRESET = "7b-shaped"
SEQUENCE_LENGTH = 10_000
LENGTHS = (1, 33, 4096, 4097, 4098, 6001, SEQUENCE_LENGTH)
NEW_TOKENS = 12
MAX_MODEL_LEN = 10_240
_SOURCES = Path(__file__).parent


def real_shape_sequence() -> list[int]:
    """The one random sequence whose prefixes are the prompts."""
    rng = random.Random(25)
    return [rng.randrange(151643) for _ in range(SEQUENCE_LENGTH)]


def answers_file_name(checkpoint: Path, sequence: Sequence[int]) -> str:
    """`reference-7b-shaped-<key>.json`: the key covers everything the answers depend on."""
    digest = hashlib.sha256((checkpoint / "config.json").read_bytes())
    with (checkpoint / "model.safetensors").open("rb") as weights:
        digest.update(hashlib.file_digest(weights, "sha256").digest())
    for module in ("reference", "config", "weights"):
        digest.update((_SOURCES / f"{module}.py").read_bytes())
    digest.update(json.dumps([list(sequence), LENGTHS, NEW_TOKENS]).encode())
    return f"reference-{PRESET}-{digest.hexdigest()[:16]}.json"


def compute_answers(
    checkpoint: Path, sequence: Sequence[int], known_dirs: Sequence[Path] = ()
) -> list[Continuation]:
    """The reference's greedy continuations, read from `known_dirs` or the checkpoint's directory
    when this exact computation was done before, else computed and written beside the checkpoint."""
    from engine.spikingbrain.reference import GLAswaReference

    name = answers_file_name(checkpoint, sequence)
    cached = checkpoint.parent / name
    for known in (*(d / name for d in known_dirs), cached):
        if known.is_file():
            return [Continuation(**c) for c in json.loads(known.read_text())]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one-token steps: more threads only contend
    try:
        reference = GLAswaReference.from_pretrained(checkpoint)
        answers = reference.greedy_continuations(list(sequence), LENGTHS, NEW_TOKENS)
    finally:
        torch.set_num_threads(threads)
    cached.write_text(json.dumps([asdict(a) for a in answers]))
    return answers
