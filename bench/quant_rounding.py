"""`python -m bench.quant_rounding`: where W8A8's loss of top-1 agreement comes from, in plain PyTorch.

A `gla_swa` checkpoint (no vLLM) against the same model with its decoder projections replaced by
what the W8A8 converter writes, dequantized (`quantize_rtn` + `dequantize`: per-output-channel
symmetric int8), and against that plus vLLM's dynamic per-token int8 activation rounding
(fake-quantized), each in float32 and in bfloat16, and bf16 itself against float32. The float32
reference (`GLAswaReference`) writes the unquantized model's greedy continuations once; every
variant scores them teacher-forced with the batched torch model (`GLAswaTorchForCausalLM`, its GLA
in float32 as vLLM's kernel), and a position agrees where its top-1 is the unquantized model's in
the same dtype. If float32 keeps every choice where the margin is clear and bf16 does not, the loss
is bf16 arithmetic on flat logits, not the quantizer.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.core.agreement import random_prompts

if TYPE_CHECKING:
    from engine.spikingbrain.torch_model import GLAswaTorchForCausalLM

ROOT = Path(__file__).resolve().parents[1]
PROMPT_LENGTHS = (8, 25, 42, 59, 77, 94, 111, 128)
"""Eight prompts of 8 to 128 tokens (seed 4), as the one-off vLLM measurement of docs/quantization.md."""
NEW_TOKENS = 32
MARGINS = (0.0, 0.1, 0.2, 0.5)
_PROJECTION = re.compile(
    r"^model\.layers\.\d+\.(?:attn|self_attn|mlp)\.(?:q|k|v|o|gate|up|down)_proj\.weight$"
)


@dataclass(frozen=True)
class Row:
    """Top-1 agreement of one variant with a baseline, by the baseline's margin floor."""

    dtype: str
    variant: str
    baseline: str
    positions: dict[str, int]
    agree: dict[str, int]


def rounded_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with every projection put on W8A8's grid (as float32)."""
    from engine.quantization.schemes import get_scheme
    from engine.quantization.tensors import dequantize, quantize_rtn

    scheme = get_scheme("w8a8")
    out = dict(weights)
    for name, tensor in weights.items():
        if _PROJECTION.match(name):
            codes, scale = quantize_rtn(tensor, scheme, torch.float32)
            out[name] = dequantize(codes, scale)
    return out


def int8_per_token(x: torch.Tensor) -> torch.Tensor:
    """vLLM's dynamic symmetric per-token activation rounding: absmax / 127, codes in [-128, 127]."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-10) / 127.0
    return (torch.round(x.float() / scale).clamp(-128, 127) * scale).to(x.dtype)


def build(
    model: Path, weights: Mapping[str, torch.Tensor], dtype: torch.dtype, activations: bool
) -> GLAswaTorchForCausalLM:
    """The torch model on `weights`; with `activations`, its projections read int8-rounded inputs."""
    from engine.spikingbrain.config import GLAswaConfig
    from engine.spikingbrain.torch_model import GLAswaTorchForCausalLM
    from engine.spikingbrain.weights import gate_layout

    config = GLAswaConfig(**json.loads((model / "config.json").read_text()))
    net = GLAswaTorchForCausalLM(config, gate_layout(weights))
    state = dict(weights)
    state.setdefault("lm_head.weight", state["model.embeddings.weight"])
    net.load_state_dict(state, strict=True)
    torch.nn.Module.to(net, dtype)
    if activations:
        for name, module in net.named_modules():
            if _PROJECTION.match(name + ".weight"):
                module.register_forward_pre_hook(lambda _m, args: (int8_per_token(args[0]),))
    return net.eval()


@torch.no_grad()
def score(
    net: GLAswaTorchForCausalLM, prompts: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]]
) -> torch.Tensor:
    """float32 logits [positions, vocab] at the continuation positions, every sequence in turn."""
    rows = []
    for prompt, seq in zip(prompts, sequences, strict=True):
        hidden = net.model(torch.tensor([seq[:-1]]))[0, len(prompt) - 1 :]
        rows.append(net.lm_head(hidden).float())
    return torch.cat(rows)


def compare(dtype: str, variant: str, baseline: str, base: torch.Tensor, other: torch.Tensor) -> Row:
    top2 = base.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    same = other.argmax(dim=-1) == base.argmax(dim=-1)
    return Row(
        dtype=dtype,
        variant=variant,
        baseline=baseline,
        positions={f"{m}": int((margin > m).sum()) for m in MARGINS},
        agree={f"{m}": int((same & (margin > m)).sum()) for m in MARGINS},
    )


def measure(
    model: Path, prompts: Sequence[Sequence[int]], new_tokens: int, dtypes: Sequence[str]
) -> list[Row]:
    from engine.spikingbrain.config import GLAswaConfig
    from engine.spikingbrain.reference import GLAswaReference, load_weights

    config = GLAswaConfig(**json.loads((model / "config.json").read_text()))
    weights = {n: t.float() for n, t in load_weights(model).items()}
    reference = GLAswaReference(config, weights)
    sequences = [[*p, *reference.generate_greedy(p, new_tokens)] for p in prompts]
    del reference
    rounded = rounded_weights(weights)
    rows: list[Row] = []
    unquantized: dict[str, torch.Tensor] = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        base = unquantized[name] = score(build(model, weights, dtype, activations=False), prompts, sequences)
        for variant, activations in (("W8A8 weights", False), ("W8A8 weights + activations", True)):
            got = score(build(model, rounded, dtype, activations), prompts, sequences)
            rows.append(compare(name, variant, f"unquantized {name}", base, got))
    if "float32" in unquantized:
        for name, logits in unquantized.items():
            if name != "float32":
                rows.append(
                    compare(name, "unquantized", "unquantized float32", unquantized["float32"], logits)
                )
    return rows


def table(rows: Sequence[Row]) -> str:
    head = "| dtype | variant | against | " + " | ".join(f"margin > {m}" for m in MARGINS) + " |"
    lines = [head, "|---|---|---|" + "---:|" * len(MARGINS)]
    for r in rows:
        cells = [
            f"{r.agree[k]}/{r.positions[k]} = {100 * r.agree[k] / max(r.positions[k], 1):.1f}%"
            for k in (f"{m}" for m in MARGINS)
        ]
        lines.append(f"| {r.dtype} | {r.variant} | {r.baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        rates = [100 * r.agree[f"{m}"] / max(r.positions[f"{m}"], 1) for m in MARGINS]
        ax.plot([str(m) for m in MARGINS], rates, marker="o", label=f"{r.dtype}, {r.variant} vs {r.baseline}")
    ax.axhline(90, color="grey", linestyle=":", label="target (margin > 0.1)")
    ax.set_xlabel("unquantized model's top-2 logit margin >")
    ax.set_ylabel("top-1 agreement (%)")
    ax.set_title("W8A8 rounding against the unquantized reference (plain PyTorch)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / ".cache" / "checkpoints" / "gla_swa-small")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quant_rounding")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="", help="what the model is, for the report (random, trained)")
    args = parser.parse_args(argv)
    prompts = random_prompts(PROMPT_LENGTHS, seed=4)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    rows = measure(args.model, prompts, args.new_tokens, dtypes)
    settings = {
        "model": str(args.model),
        "label": args.label,
        "prompt_lengths": list(PROMPT_LENGTHS),
        "new_tokens": args.new_tokens,
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "rows": [asdict(r) for r in rows]}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    text = table(rows)
    args.out.with_suffix(".md").write_text(
        f"# W8A8 rounding, plain PyTorch ({args.label or args.model.name})\n\n{text}\n"
    )
    plot(rows, args.out.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
