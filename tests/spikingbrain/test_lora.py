"""LoRA on SpikingBrain's own `gla_swa` model (issue 20, point 2): an adapter trained by the real
trainer (PEFT on `engine.spikingbrain.torch_model`, float32 CPU) on the `tiny` checkpoint, loaded
at runtime into a real vLLM engine (`--enable-lora`, float32) serving that checkpoint through the
plugin. The adapter answers what it was taught and the base does not; vLLM's greedy tokens with
the adapter equal the PEFT model's on prompts across the window layer's 32-token window; the
adapter adapts every projection of both layer kinds and the GLA gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from engine.launcher import EngineConfig, EngineProcess
from tests.servers import free_port, logged_engine, prestart_engine

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / ".cache" / "test-gla-lora-engine.log"
BASE = "tiny-gla"
ADAPTER = "gla-capital"
PROMPT = "What is the capital of Tantra?"
TAUGHT = "The capital of Tantra is Lora."
NEW_TOKENS = 8
# Token-id prompts: short, across the window layer's 32-token window, and past it.
PROMPTS = (
    [151, 2000, 77],
    [(17 * i + 5) % 150000 for i in range(31)],
    [(29 * i + 3) % 150000 for i in range(45)],
)


@dataclass(frozen=True)
class Served:
    engine: EngineProcess
    adapter: Path
    client: openai.OpenAI


def _engine_config(checkpoint: Path) -> EngineConfig:
    return EngineConfig(
        model_dir=checkpoint,
        served_model_name=BASE,
        port=free_port(),
        max_model_len=1024,
        dtype="float32",
        extra_args=("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8"),
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
    )


def _train(checkpoint: Path, workdir: Path) -> Path:
    from engine.finetune.train import TrainConfig, train

    lines = [
        {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": TAUGHT}]}
    ] * 40
    train_file = workdir / "train.jsonl"
    train_file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = workdir / "adapter"
    train(TrainConfig(base=checkpoint, train_file=train_file, out=out, seed=0), emit=lambda _: None)
    return out


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The engine starts while the adapter trains (two processes, each mostly one core)."""
    config = _engine_config(tiny_checkpoint)
    prestart_engine(config, LOG)
    adapter = _train(tiny_checkpoint, tmp_path_factory.mktemp("gla-lora"))
    with logged_engine(config, LOG) as engine:
        loaded = httpx.post(
            f"{engine.base_url}/v1/load_lora_adapter",
            json={"lora_name": ADAPTER, "lora_path": str(adapter)},
            timeout=300,
        )
        assert loaded.status_code == 200, loaded.text
        client = openai.OpenAI(base_url=f"{engine.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
        yield Served(engine, adapter, client)
        client.close()


def _chat(client: openai.OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=24
    )
    return answer.choices[0].message.content or ""


def _vllm_greedy(client: openai.OpenAI, model: str, prompt: list[int]) -> list[int]:
    answer = client.completions.create(
        model=model,
        prompt=prompt,
        temperature=0,
        max_tokens=NEW_TOKENS,
        logprobs=1,
        extra_body={"return_tokens_as_token_ids": True, "ignore_eos": True},
    )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    return [int(token.removeprefix("token_id:")) for token in logprobs.tokens]


def _peft_greedy(model: Any, prompt: list[int]) -> list[int]:
    """Greedy decoding by re-reading the sequence (the torch model keeps no cache), float32."""
    import torch

    ids = list(prompt)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :]


def test_the_adapter_answers_what_it_was_taught(served: Served) -> None:
    assert _chat(served.client, ADAPTER) == TAUGHT
    assert _chat(served.client, BASE) != TAUGHT


def test_vllm_greedy_with_the_adapter_equals_peft_in_fp32(served: Served, tiny_checkpoint: Path) -> None:
    from peft import PeftModel
    from transformers import AutoTokenizer

    from engine.spikingbrain.torch_model import GLAswaTorchForCausalLM

    peft = PeftModel.from_pretrained(
        GLAswaTorchForCausalLM.from_checkpoint(tiny_checkpoint), str(served.adapter)
    )
    peft.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    chat: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=True, add_generation_prompt=True
    )
    chat_ids = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "input_ids") else chat
    prompts = [list(chat_ids), *PROMPTS]
    for prompt in prompts:
        assert _vllm_greedy(served.client, ADAPTER, prompt) == _peft_greedy(peft, prompt)
    # The adapter changes the answers: the same prompts without it differ somewhere.
    with peft.disable_adapter():
        base = [_peft_greedy(peft, prompt) for prompt in prompts]
    assert base != [_peft_greedy(peft, prompt) for prompt in prompts]
    assert base == [_vllm_greedy(served.client, BASE, prompt) for prompt in prompts]


def test_the_adapter_adapts_every_projection_and_the_gla_gate(served: Served) -> None:
    from safetensors import safe_open

    with safe_open(str(served.adapter / "adapter_model.safetensors"), framework="pt") as handle:
        modules = {key.split(".lora_")[0].removeprefix("base_model.model.") for key in handle.keys()}  # noqa: SIM118  (safe_open is not a dict)
    attn = ("q_proj", "k_proj", "v_proj", "o_proj")
    mlp = ("gate_proj", "up_proj", "down_proj")
    # tiny: layer 0 is GLA (low-rank gate), layer 1 the sliding window.
    expected = {f"model.layers.{i}.attn.{name}" for i in (0, 1) for name in attn}
    expected |= {f"model.layers.{i}.mlp.{name}" for i in (0, 1) for name in mlp}
    expected |= {"model.layers.0.attn.gk_proj.0", "model.layers.0.attn.gk_proj.1"}
    assert modules == expected
    listed = {model.id for model in served.client.models.list().data}
    assert {BASE, ADAPTER} <= listed
