"""`make gpu-check`: SpikingBrain and Long-VITA served on an NVIDIA GPU with CUDA graphs, against
their CPU references.

On a machine with a GPU:
- SpikingBrain: builds the `7b-shaped` preset, serves it in float32 through vLLM's offline engine
  with CUDA graphs and torch.compile on (vLLM's defaults; no `--enforce-eager`), checks that every
  greedy continuation equals the reference's (the answers the CPU tests use), then runs the
  long-context decode bench (`python -m bench.core --parts context --compile`) on the GPU;
- Long-VITA: builds `tiny-long-vita`, serves it the same way (float32, CUDA graphs) on the prompts of
  tests/long_vita/test_vllm_greedy.py (1, 3 and 16 images, a video; chunked prefill, then again
  from the prefix cache), checks the prompt ids and the greedy tokens against the plain-torch
  reference on the CPU, then runs the per-tile long-context bench (`python -m
  bench.long_vita_context`) on the GPU.
Exits 1 when a continuation differs. Without a GPU it says so and exits 0: nothing here can be
checked on this project's CPU-only machines (docs/spikingbrain.md and docs/vision.md, "GPU").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / ".cache" / "spikingbrain" / "gla_swa-7b-shaped"
DRIVER = ROOT / "tests" / "spikingbrain" / "vllm_driver.py"
ANSWERS = ROOT / "tests" / "spikingbrain" / "data"
BENCH_OUT = ROOT / ".cache" / "gpu-check"
LONG_VITA = ROOT / ".cache" / "long-vita" / "tiny-long-vita"
VITA_DRIVER = ROOT / "tests" / "long_vita" / "vllm_driver.py"


def gpu_name() -> str | None:
    """The first CUDA device's name, or None without one (or without a CUDA build of torch)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main() -> int:
    name = gpu_name()
    if name is None:
        print(
            "gpu-check: no NVIDIA GPU on this machine (torch.cuda.is_available() is False); nothing checked."
        )
        return 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    failed = [f"SpikingBrain at {n} tokens" for n in spikingbrain(name, env)]
    failed += [f"Long-VITA prompt {p}" for p in long_vita(env)]
    if failed:
        print(f"gpu-check: greedy continuations differ from the reference: {', '.join(failed)}")
        return 1
    print("gpu-check: every continuation equals the reference (CUDA graphs on, prefix cache hit too)")
    return 0


def spikingbrain(name: str, env: dict[str, str]) -> list[int]:
    """The prompt lengths whose continuation differs from the reference's; runs the context bench."""
    from engine.checkpoint import ensure_checkpoint
    from engine.spikingbrain.gla_batch import describe_kernel
    from engine.spikingbrain.real_shapes import (
        LENGTHS,
        MAX_MODEL_LEN,
        NEW_TOKENS,
        PRESET,
        compute_answers,
        real_shape_sequence,
    )

    print(f"gpu-check on {name}; GLA prefill kernel: {describe_kernel('cuda')}")
    checkpoint = ensure_checkpoint(CHECKPOINT, PRESET, 0, "gla_swa")
    sequence = real_shape_sequence()
    want = [a.tokens for a in compute_answers(checkpoint, sequence, (ANSWERS,))]
    with tempfile.TemporaryDirectory() as tmp:
        prompts, out = Path(tmp) / "prompts.json", Path(tmp) / "out.json"
        prompts.write_text(json.dumps([sequence[:n] for n in LENGTHS]))
        subprocess.run(
            [
                sys.executable, str(DRIVER), "--model", str(checkpoint), "--prompts", str(prompts),
                "--out", str(out), "--dtype", "float32", "--max-tokens", str(NEW_TOKENS),
                "--max-model-len", str(MAX_MODEL_LEN), "--max-num-batched-tokens", "2048", "--repeat",
            ],
            check=True,
            env=env,
        )  # fmt: skip
        report = json.loads(out.read_text())
    got = [r["token_ids"] for r in report["results"]]
    failed = [n for n, a, b in zip(LENGTHS, got, want, strict=True) if a != b]
    failed += [n for n, a, b in zip(LENGTHS, report["repeat_token_ids"], want, strict=True) if a != b]
    for n, a, b in zip(LENGTHS, got, want, strict=True):
        print(f"prompt of {n:>6} tokens: {'equal' if a == b else f'DIFFERS: {a} vs reference {b}'}")
    bench = [sys.executable, "-m", "bench.core", "--parts", "context", "--compile", "--out", str(BENCH_OUT)]
    subprocess.run(bench, check=True, cwd=ROOT, env={**env, "TANTRA_ENGINE_DEVICE": "cuda"})
    return failed


def long_vita(env: dict[str, str]) -> list[int]:
    """The Long-VITA prompts (by index) whose ids or greedy tokens differ from the reference's;
    runs the per-tile context bench."""
    from transformers import AutoTokenizer

    from engine.checkpoint import ensure_checkpoint
    from engine.long_vita.reference import LongVitaReference
    from engine.long_vita.vllm_plugin import register
    from tests.long_vita.test_vllm_greedy import NEW_TOKENS, PROMPTS, chat_text, reference_prompt

    register()
    checkpoint = ensure_checkpoint(LONG_VITA, "tiny-long-vita", 0, "long_vita")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    reference = LongVitaReference.from_pretrained(checkpoint)
    specs = [{**spec, "text": chat_text(tokenizer, spec["parts"])} for spec in PROMPTS]
    with tempfile.TemporaryDirectory() as tmp:
        prompts, out = Path(tmp) / "prompts.json", Path(tmp) / "out.json"
        prompts.write_text(json.dumps(specs))
        subprocess.run(
            [
                sys.executable, str(VITA_DRIVER), "--model", str(checkpoint), "--prompts", str(prompts),
                "--out", str(out), "--max-tokens", str(NEW_TOKENS), "--max-num-batched-tokens", "1024",
                "--repeat", "--cuda-graphs",
            ],
            check=True,
            env=env,
        )  # fmt: skip
        runs = json.loads(out.read_text())["runs"]
    failed = []
    for index, spec in enumerate(specs):
        prompt = reference_prompt(tokenizer, spec)
        want = reference.generate_greedy(prompt, NEW_TOKENS)
        first, again = (run[index] for run in runs)
        equal = first["prompt_token_ids"] == prompt.ids and first["tokens"] == again["tokens"] == want
        print(f"Long-VITA prompt {index} ({' '.join(spec['parts'])[:40]}): {'equal' if equal else 'DIFFERS'}")
        if not equal:
            failed.append(index)
    bench = [sys.executable, "-m", "bench.long_vita_context", "--out", str(BENCH_OUT)]
    subprocess.run(bench, check=True, cwd=ROOT, env={**env, "TANTRA_ENGINE_DEVICE": "cuda"})
    return failed


if __name__ == "__main__":
    sys.exit(main())
