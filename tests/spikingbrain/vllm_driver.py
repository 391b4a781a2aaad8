"""Run vLLM's offline engine on a `gla_swa` checkpoint and print what it produced as JSON.

The tests start this in its own process group, so every process vLLM spawns
dies with it when the test ends or times out. Greedy continuations and raw
prompt logits (`logprobs_mode="raw_logits"`) come back for token-id prompts.

`--plan FILE` (a JSON list of argument lists, each one run's arguments) runs several engines one
after another in this one process: Python, torch and vLLM are imported once, not once a run, which
on a busy 2-core host is tens of seconds a run.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--plan"] and len(args) == 2:
        plan: list[list[str]] = json.loads(Path(args[1]).read_text())
        for run_argv in plan:
            _run(run_argv)
            _release()
    else:
        _run(args)


def _release() -> None:
    """Tears down the last engine's distributed state and memory, so the next one can start."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    gc.collect()
    cleanup_dist_env_and_memory()


def _run(argv: list[str]) -> None:
    """One engine built from `argv`, its prompts served, its report written; the engine let go."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="JSON file: a list of token-id lists")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--prompt-logprobs", type=int, default=0)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--no-prefix-caching", action="store_true")
    parser.add_argument("--hf-overrides", default=None, help="JSON: config keys to override, as vLLM's flag")
    parser.add_argument(
        "--count-preemptions", action="store_true", help="log stats and report vllm:num_preemptions"
    )
    parser.add_argument(
        "--then-one-by-one",
        type=int,
        default=0,
        metavar="N",
        help="then submit the first N prompts again, each alone, on pages the batch has used",
    )
    parser.add_argument(
        "--repeat", action="store_true", help="submit the prompts a second time, to hit the prefix cache"
    )
    args = parser.parse_args(argv)

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from engine.spikingbrain.vllm_plugin import register

    register()  # the entry point does this too; harmless twice
    prompts: list[list[int]] = json.loads(Path(args.prompts).read_text())
    engine_args: dict[str, Any] = {
        "model": args.model,
        "dtype": args.dtype,
        "max_model_len": args.max_model_len,
        "enforce_eager": args.enforce_eager,
        "logprobs_mode": "raw_logits",
        "enable_prefix_caching": not args.no_prefix_caching,
        "seed": 0,
        # With VLLM_ENABLE_V1_MULTIPROCESSING=0 (conftest): the model runner in this process.
        "distributed_executor_backend": "uni",
    }
    if args.hf_overrides:
        engine_args["hf_overrides"] = json.loads(args.hf_overrides)
    if args.count_preemptions:
        engine_args["disable_log_stats"] = False
    if args.max_num_batched_tokens is not None:
        engine_args["enable_chunked_prefill"] = True
        engine_args["max_num_batched_tokens"] = args.max_num_batched_tokens
    llm = LLM(**engine_args)
    params = SamplingParams(
        temperature=0.0,
        max_tokens=args.max_tokens,
        ignore_eos=True,
        prompt_logprobs=args.prompt_logprobs or None,
        logprobs=1,
    )
    token_prompts = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    outputs = llm.generate(token_prompts, params)
    results = [_result(out) for out in outputs]
    report: dict[str, Any] = {"results": results}
    if args.then_one_by_one:
        report["one_by_one"] = [
            _result(llm.generate([p], params)[0]) for p in token_prompts[: args.then_one_by_one]
        ]

    if args.count_preemptions:
        report["preemptions"] = sum(
            int(getattr(m, "value", 0)) for m in llm.get_metrics() if m.name == "vllm:num_preemptions"
        )
        print(f"Preemptions: {report['preemptions']}", file=sys.stderr)
    if args.repeat:
        again = llm.generate(
            token_prompts,
            SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True),
        )
        report["repeat_token_ids"] = [list(out.outputs[0].token_ids) for out in again]
        report["repeat_cached_tokens"] = [out.num_cached_tokens or 0 for out in again]
    Path(args.out).write_text(json.dumps(report))
    print(f"wrote {len(results)} results to {args.out}", file=sys.stderr)
    llm.llm_engine.engine_core.shutdown()


def _result(out: Any) -> dict[str, Any]:
    """One request's greedy tokens, raw prompt logits and sampled logits."""
    completion = out.outputs[0]
    prompt_logits = None
    if out.prompt_logprobs is not None:
        # Entry i scores token i given tokens < i; the first is None.
        prompt_logits = [
            None if entry is None else {str(tok): lp.logprob for tok, lp in entry.items()}
            for entry in out.prompt_logprobs
        ]
    sampled_logits: list[float] | None = None
    if completion.logprobs is not None:
        sampled_logits = []
        for entry, tok in zip(completion.logprobs, completion.token_ids, strict=True):
            # logprobs=1 asks for one entry per sampled token; only prompt entries may be None.
            assert entry is not None, "vLLM returned no logprob for a sampled token"
            sampled_logits.append(entry[tok].logprob)
    return {
        "token_ids": list(completion.token_ids),
        "prompt_logits": prompt_logits,
        "sampled_logits": sampled_logits,
    }


if __name__ == "__main__":
    main()
