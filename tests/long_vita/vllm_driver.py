"""Run vLLM's offline engine on a `long_vita` checkpoint over multimodal prompts; write JSON.

Each prompt is `{"text": ..., "images": [[w, h, seed], ...], "video": [frames, w, h, seed] | null}`;
images and frames come from `tests.long_vita.media`, as the tests' reference builds them. The
engine core runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the plugin's
registration here is the one the model loader sees whatever the installed entry points are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-model-len", type=int, default=16384)
    parser.add_argument("--max-num-batched-tokens", type=int, default=8192)
    parser.add_argument("--repeat", action="store_true")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="leave eager mode to vLLM (make gpu-check, on a GPU)"
    )
    args = parser.parse_args(argv)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

    from vllm import LLM, SamplingParams

    from engine.long_vita.vllm_plugin import register
    from tests.long_vita.media import frames, picture

    register()
    specs: list[dict[str, Any]] = json.loads(Path(args.prompts).read_text())
    llm = LLM(
        model=args.model,
        dtype="float32",
        max_model_len=args.max_model_len,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enforce_eager=not args.cuda_graphs,
        enable_prefix_caching=True,
        limit_mm_per_prompt={"image": 16, "video": 1},
        seed=0,
        # A fixed KV cache (fp32, 2 layers, 1 KV head of 64: 1 KiB per token): the CPU backend
        # otherwise reserves a fraction of the machine's memory, which shared runners lack.
        kv_cache_memory_bytes=64 * 2**20,
    )
    requests = []
    for spec in specs:
        data: dict[str, Any] = {}
        if spec.get("images"):
            data["image"] = [picture(*image) for image in spec["images"]]
        if spec.get("video"):
            data["video"] = frames(*spec["video"])
        requests.append({"prompt": spec["text"], "multi_modal_data": data})
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    runs = [llm.generate(requests, params)]  # type: ignore[arg-type]
    if args.repeat:
        runs.append(llm.generate(requests, params))  # type: ignore[arg-type]
    report = {
        "runs": [
            [
                {
                    "prompt_token_ids": list(out.prompt_token_ids or []),
                    "tokens": list(out.outputs[0].token_ids),
                    "cached_tokens": out.num_cached_tokens,
                }
                for out in outs
            ]
            for outs in runs
        ]
    }
    Path(args.out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
