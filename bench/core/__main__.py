"""`python -m bench.core`: decode cost against context (gla_swa vs qwen2), and bf16 vs W8A8 vs W4A16.

One vLLM engine runs at a time and is always stopped (its whole process
group) before the next starts. `--quick` runs the same code on the tiny
preset with short contexts: a smoke test, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

from bench.core.context import ContextPoint, run_context_bench
from bench.core.quant import SchemePoint, run_quant_bench
from bench.core.report import context_table, quant_table, write_results
from engine.checkpoint import ensure_checkpoint
from engine.quantization import ensure_quantized

ROOT = Path(__file__).resolve().parents[2]
FULL_CONTEXTS = (1024, 4096, 16384, 32704)
"""32704 + 64 decoded tokens = 32768, the small preset's max_position_embeddings."""
QUICK_CONTEXTS = (64, 512)
LOGS = ROOT / ".cache" / "bench-core-logs"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    preset = "tiny" if args.quick else "small"
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    contexts = (
        tuple(int(c) for c in args.contexts.split(","))
        if args.contexts
        else (QUICK_CONTEXTS if args.quick else FULL_CONTEXTS)
    )
    repeats = args.repeats or (1 if args.quick else 3)
    default_out = ROOT / ".cache" / "bench-core-quick" if args.quick else ROOT / "bench" / "results" / "core"
    out = args.out or default_out
    settings: dict[str, object] = {"preset": preset, "repeats": repeats, "compile": args.compile}
    settings["cpus"] = _cpus()
    started = time.monotonic()
    context_points: list[ContextPoint] = []
    if args.reuse_context:
        earlier = json.loads(args.reuse_context.read_text())
        context_points = [ContextPoint(**p) for p in earlier["context"]]
        settings.update({k: v for k, v in earlier["settings"].items() if k in ("contexts", "decode_tokens")})
        settings["context_from"] = str(args.reuse_context)
    elif "context" in parts:
        context_points = _context_part(args, preset, contexts, repeats, settings)
        write_results(out, context_points, [], settings)  # kept even if a later part fails
    quant_points = _quant_part(args, preset, repeats, settings) if "quant" in parts else []
    settings["wall_s"] = round(time.monotonic() - started, 1)
    written = write_results(out, context_points, quant_points, settings)
    if context_points:
        print(context_table(context_points))
    if quant_points:
        print(quant_table(quant_points))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny preset, short runs: a smoke test")
    parser.add_argument("--parts", default="context,quant", help="comma-separated: context, quant")
    parser.add_argument("--contexts", default=None, help="comma-separated prompt lengths")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--archs", default="gla_swa,qwen2", help="architectures of the context runs")
    parser.add_argument("--schemes", default="bf16,w8a8,w4a16", help="weight formats; bf16 first")
    parser.add_argument("--quant-arch", default="gla_swa", help="architecture of the weight-format runs")
    parser.add_argument("--compile", action="store_true", help="let vLLM torch.compile (slower start)")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/core (quick: .cache/)")
    parser.add_argument(
        "--reuse-context", type=Path, default=None, help="take the context part from an earlier results.json"
    )
    parser.add_argument("--checkpoints", type=Path, default=ROOT / ".cache" / "checkpoints")
    return parser


def _checkpoint(args: argparse.Namespace, preset: str, arch: str) -> Path:
    return ensure_checkpoint(args.checkpoints / f"{arch}-{preset}", preset, 0, arch)


def _context_part(
    args: argparse.Namespace,
    preset: str,
    contexts: tuple[int, ...],
    repeats: int,
    settings: dict[str, object],
) -> list[ContextPoint]:
    """Decode cost against context length, per architecture; its knobs are added to `settings`."""
    decode_tokens = 8 if args.quick else 64
    settings.update(contexts=list(contexts), decode_tokens=decode_tokens)
    return run_context_bench(
        {arch: _checkpoint(args, preset, arch) for arch in args.archs.split(",")},
        contexts,
        decode_tokens=decode_tokens,
        repeats=repeats,
        kv_cache_gib=1.0,
        port=_free_port(),
        logs=LOGS,
        compile_model=args.compile,
    )


def _quant_part(
    args: argparse.Namespace, preset: str, repeats: int, settings: dict[str, object]
) -> list[SchemePoint]:
    """bf16 against the quantized copies of one architecture; its knobs are added to `settings`."""
    base = _checkpoint(args, preset, args.quant_arch)
    schemes = {
        scheme: base if scheme == "bf16" else ensure_quantized(base, Path(f"{base}-{scheme}"), scheme)
        for scheme in args.schemes.split(",")
    }
    prompt_tokens, new_tokens, concurrency = (64, 16, 4) if args.quick else (256, 128, 8)
    settings.update(quant_arch=args.quant_arch, prompt_tokens=prompt_tokens)
    settings.update(new_tokens=new_tokens, concurrency=concurrency)
    return run_quant_bench(
        schemes,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        concurrency=concurrency,
        repeats=repeats,
        agreement_prompts=2 if args.quick else 8,
        kv_cache_gib=1.0,
        port=_free_port(),
        logs=LOGS,
        compile_model=args.compile,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
