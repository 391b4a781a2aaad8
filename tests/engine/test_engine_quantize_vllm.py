"""Quantized tiny checkpoints served by vLLM's OpenAI server (Tantra's launcher), against bf16.

For SpikingBrain's gla_swa, one engine per quantized format, W8A8 and W4A16, starts beside a bf16
engine of the same checkpoint: the session's chat engine (it serves gla_swa-tiny's weights in bf16).
The quantized engines must answer completions and chat, and pick bf16's greedy token on most
positions. Qwen2's W8A8 checkpoint (the same writer, read by vLLM's own Qwen2 model) is served too
and must answer, directly and through the gateway; its agreement with bf16 (a third engine, a
fourth with W4A16) was measured and is in docs/quantization.md, but is no longer run here: each
engine start costs the suite about a minute, and the quantizer's output is already checked tensor
by tensor against compressed-tensors in test_engine_quantize.py.
The tiny model has random weights, so its logits nearly tie everywhere (std about 0.25); the rates
are printed, the floors are loose, and a stricter check applies where bf16's own top-2 margin is
clear.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bench.core.agreement import agreement, greedy_sequences, random_prompts, teacher_forced
from bench.core.engine import Served, serve
from engine.launcher import EngineProcess
from engine.quantization import ensure_quantized, kernel_library, missing_kernel
from gateway.app import create_app
from gateway.settings.schema import Settings
from tests.servers import ThreadedServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SCHEMES = ("w8a8", "w4a16")
RUNS = (("gla_swa", "bf16"), ("gla_swa", "w8a8"), ("gla_swa", "w4a16"), ("qwen2", "w8a8"))
"""What the module serves; the agreement test compares gla_swa's formats with its bf16 run."""
NEW_TOKENS = 32
# Lengths cross the gla_swa tiny preset's 32-token window.
PROMPT_LENGTHS = (5, 17, 40, 64, 90, 128, 160, 200)
FLOOR = {"w8a8": 0.85, "w4a16": 0.2}
"""Teacher-forced agreement floors. Observed (vLLM 0.32, this CPU): W8A8 94% gla_swa, 90% qwen2;
W4A16 45% gla_swa, 25% qwen2. 4-bit round-to-nearest moves a random tiny model's nearly tied logits
a lot; that the W4A16 kernel reads the format right was checked apart: it decodes the same tokens as
bf16 serving of the dequantized weights, on every position."""
AVX2_FLOOR = {"w8a8": 0.4}
"""On a host without AVX-512, vLLM's AVX2 kernels run W8A8 through oneDNN's int8 GEMM without VNNI
(W4A16 is not served there at all), and agree much less with bf16. Observed on such a host (vLLM
0.32): teacher-forced 58.6% on gla_swa and 50.8% on qwen2; where bf16's margin is clear, 84.7% and
68.5%. There the floor only catches a broken kernel, and the clear-margin rate is printed, not held
(docs/quantization.md)."""
CLEAR_MARGIN = {"w8a8": 0.05, "w4a16": 0.2}
"""Where bf16's top-1 leads its runner-up by this much (logprob), the quantized engine must agree.
Such positions are few: the tiny model's margins are mostly below 0.1."""

Runs = dict[tuple[str, str], dict[str, Any]]

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("TANTRA_SKIP_VLLM")), reason="TANTRA_SKIP_VLLM is set"),
    # The first test also starts four engines in turn: ~3 min on a quiet machine, far more when loaded.
    pytest.mark.timeout(2400),
    pytest.mark.engines(3),  # the quantized engines, side by side beside the session's
]


def _measure(
    served: Served,
    prompts: list[list[int]],
    baseline: Future[list[list[int]]] | None,
    own: Future[list[list[int]]] | None = None,
) -> dict[str, Any]:
    """Teacher-forced on `baseline`'s sequences (bf16's, from another thread) or on its own greedy
    ones, which it hands to `own` as soon as it has them."""
    try:
        text = served.client.post(
            "/v1/completions", json={"model": served.model, "prompt": "Hello", "max_tokens": 4}
        )
        chat = served.client.post(
            "/v1/chat/completions",
            json={"model": served.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )
        greedy = greedy_sequences(served, prompts, NEW_TOKENS)
    except BaseException as error:  # the threads waiting for these sequences fail with it
        if own is not None:
            own.set_exception(error)
        raise
    if own is not None:
        own.set_result(greedy)
    forced = teacher_forced(served, prompts, greedy if baseline is None else baseline.result())
    return {"status": (text.status_code, chat.status_code), "greedy": greedy, "forced": forced}


def _through_gateway(served: Served, gateway_settings: Callable[..., Settings]) -> dict[str, Any]:
    """The same engine behind Tantra's gateway, called with the openai SDK: JSON and a stream."""
    settings = gateway_settings(engine_url=str(served.client.base_url), auth_enabled=False)
    with (
        ThreadedServer(create_app(settings)) as gateway,
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=120) as client,
    ):
        messages: Any = [{"role": "user", "content": "Hi"}]
        reply = client.chat.completions.create(
            model=served.model, messages=messages, max_tokens=4, extra_body={"ignore_eos": True}
        )
        chunks = list(
            client.chat.completions.create(
                model=served.model,
                messages=messages,
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
        )
    usage = chunks[-1].usage
    return {
        "json_tokens": reply.usage.completion_tokens if reply.usage else None,
        "stream_tokens": usage.completion_tokens if usage else None,
    }


@contextmanager
def _running(process: EngineProcess, model: str) -> Iterator[Served]:
    with httpx.Client(base_url=process.base_url, timeout=3600) as client:
        yield Served(process, client, model, 0, 0.0)


@pytest.fixture(scope="module")
def runs(
    gateway_settings: Callable[..., Settings],
    engine: EngineProcess,
    model: str,
    tiny_checkpoint: Path,
    qwen2_checkpoint: Path,
) -> Runs:
    pytest.importorskip("vllm")
    prompts = random_prompts(PROMPT_LENGTHS, seed=5)
    checkpoints = {"gla_swa": tiny_checkpoint, "qwen2": qwen2_checkpoint}
    quantized = [(a, s) for a, s in RUNS if s != "bf16" and missing_kernel(s) is None]
    contexts: list[AbstractContextManager[Served]] = [_running(engine, model)]
    contexts += [
        serve(
            ensure_quantized(
                checkpoints[arch], ROOT / ".cache" / "checkpoints" / f"{arch}-tiny-{scheme}", scheme
            ),
            f"tiny-{arch}-{scheme}",
            port=free_port(),
            max_model_len=512,
            kv_cache_gib=0.25,  # 512 tokens of a tiny model, beside the session engines: memory is short
            log_path=ROOT / ".cache" / f"test-quantize-{arch}-{scheme}.log",
            worker_in_process=True,
        )
        for arch, scheme in quantized
    ]
    with _all_entered(contexts) as (bf16, *engines):
        # Each engine gets the same requests in the same order as when the engines were asked one
        # after the other, but they are asked side by side: a teacher-forced pass is 256 one-token
        # requests in turn, which keep about one of the two cores busy (46.9 s -> 37.2 s measured).
        bf16_greedy: Future[list[list[int]]] = Future()
        with ThreadPoolExecutor(len(engines) + 1) as pool:
            measured = {("gla_swa", "bf16"): pool.submit(_measure, bf16, prompts, None, bf16_greedy)}
            for (arch, scheme), served in zip(quantized, engines, strict=True):
                baseline = bf16_greedy if arch == "gla_swa" else None
                measured[(arch, scheme)] = pool.submit(_measure, served, prompts, baseline)
            results: Runs = {run: future.result() for run, future in measured.items()}
        for (arch, scheme), served in zip(quantized, engines, strict=True):
            results[(arch, scheme)]["gateway"] = _through_gateway(served, gateway_settings)
    return results


def _run_of(runs: Runs, arch: str, scheme: str) -> dict[str, Any]:
    missing = missing_kernel(scheme)
    if missing is not None:
        pytest.skip(f"this CPU's vLLM kernels have no {missing} (no AVX-512): {scheme} cannot be served here")
    return runs[(arch, scheme)]


@contextmanager
def _all_entered(contexts: Sequence[AbstractContextManager[Served]]) -> Iterator[list[Served]]:
    """Start the engines side by side: a vLLM start is mostly one busy core, and this machine has two
    (one quantized engine after the other took ~4 of the suite's 47 minutes)."""
    with ExitStack() as stack, ThreadPoolExecutor(len(contexts)) as pool:
        futures = [pool.submit(context.__enter__) for context in contexts]
        entered: list[Served] = []
        failure: BaseException | None = None
        for context, future in zip(contexts, futures, strict=True):
            try:
                entered.append(future.result())
                stack.push(context.__exit__)
            except BaseException as error:  # the others still get stopped by the stack
                failure = failure or error
        if failure is not None:
            raise failure
        yield entered


@pytest.mark.parametrize(("arch", "scheme"), [run for run in RUNS if run[1] != "bf16"])
def test_quantized_checkpoint_serves(
    runs: dict[tuple[str, str], dict[str, Any]], arch: str, scheme: str
) -> None:
    run = _run_of(runs, arch, scheme)
    assert run["status"] == (200, 200)
    assert all(len(tokens) == NEW_TOKENS for tokens in run["greedy"])
    # ... and through the gateway, as a client of Tantra would use it.
    assert run["gateway"] == {"json_tokens": 4, "stream_tokens": 4}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_greedy_tokens_agree_with_bf16(runs: Runs, scheme: str, capsys: pytest.CaptureFixture[str]) -> None:
    arch = "gla_swa"
    bf16, quant = runs[(arch, "bf16")], _run_of(runs, arch, scheme)
    reference = bf16["greedy"]
    forced = agreement(reference, [[tok for tok, _ in row] for row in quant["forced"]])
    free = agreement(reference, quant["greedy"])
    control = agreement(reference, [[tok for tok, _ in row] for row in bf16["forced"]])
    clear = [
        (ref_tok, got[0])
        for ref_row, margin_row, got_row in zip(reference, bf16["forced"], quant["forced"], strict=True)
        for ref_tok, (_, margin), got in zip(ref_row, margin_row, got_row, strict=True)
        if margin > CLEAR_MARGIN[scheme]
    ]
    clear_rate = sum(a == b for a, b in clear) / max(1, len(clear))
    with capsys.disabled():
        print(
            f"\n[{arch} {scheme}] agreement with bf16 greedy: teacher-forced {forced:.1%}, "
            f"free-running {free:.1%}; at bf16 margin > {CLEAR_MARGIN[scheme]}: {clear_rate:.1%} "
            f"of {len(clear)}; bf16 re-scoring itself: {control:.1%}"
        )
    avx2 = kernel_library() == "avx2"
    assert forced >= (AVX2_FLOOR[scheme] if avx2 else FLOOR[scheme])
    if len(clear) >= 10 and not avx2:  # too few clear positions say nothing either way
        assert clear_rate >= 0.95
