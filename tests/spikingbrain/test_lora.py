"""LoRA on SpikingBrain's own `gla_swa` model (issue 20, point 2), end to end: a fine-tuning job
through the real gateway and the openai SDK (the job runner's real trainer: PEFT on
`engine.spikingbrain.torch_model`, float32 CPU) on the `tiny` checkpoint, its model served by the
session's `lora_engine` (tests/conftest.py: vLLM with `--enable-lora`, float32, on that checkpoint
through the plugin, shared with tests/gateway/fine_tuning), the adapter loaded at runtime by the
gateway. The fine-tuned model answers what it was taught and the base does not; vLLM's greedy
tokens with the adapter equal the PEFT model's on prompts across the window layer's 32-token window;
the adapter adapts every projection of both layer kinds and the GLA gate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from engine.launcher import EngineProcess
from gateway import Settings, create_app
from tests.gateway.fine_tuning.conftest import (
    BASE,
    chat_file,
    greedy,
    tuning_settings,
    upload,
    wait_job,
)
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

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
    gateway: openai.OpenAI
    engine: openai.OpenAI
    model: str
    adapter: Path
    first_answer: str


@pytest.fixture(scope="module")
def served(
    lora_engine: EngineProcess,
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A gateway of this module's own on the session's LoRA engine, fine-tuning `tiny` as
    `tiny-gla`, one job trained and its model loaded by a first chat."""
    tmp = tmp_path_factory.mktemp("gla-lora")
    settings = tuning_settings(
        gateway_settings, tmp, tiny_checkpoint, upstreams={"lora": {"url": lora_engine.base_url}}
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("gla-lora")
        secret, _ = admin.key(tenant["id"], "gla-lora")
        admin.close()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)
        job = client.fine_tuning.jobs.create(
            model=BASE,
            training_file=upload(client, chat_file(TAUGHT, prompt=PROMPT)),
            suffix="gla",
            seed=0,
        )
        done = wait_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=1500)
        assert done.status == "succeeded", done.error
        # The first chat has the gateway unpack the adapter and load it into the engine.
        answer = greedy(client, done.fine_tuned_model)
        direct = openai.OpenAI(
            base_url=f"{lora_engine.base_url}/v1", api_key="unused", max_retries=0, timeout=300
        )
        adapter = tmp / "work" / "adapters" / job.id
        yield Served(client, direct, done.fine_tuned_model, adapter, answer)
        direct.close()
        client.close()


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


def test_the_fine_tuned_model_answers_what_it_was_taught(served: Served) -> None:
    assert served.first_answer == TAUGHT
    assert greedy(served.gateway, served.model) == TAUGHT
    assert greedy(served.gateway, BASE) != TAUGHT


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
        assert _vllm_greedy(served.engine, served.model, prompt) == _peft_greedy(peft, prompt)
    # The adapter changes the answers: the same prompts without it differ somewhere.
    with peft.disable_adapter():
        base = [_peft_greedy(peft, prompt) for prompt in prompts]
    assert base != [_peft_greedy(peft, prompt) for prompt in prompts]
    assert base == [_vllm_greedy(served.engine, BASE, prompt) for prompt in prompts]


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
    # The gateway loaded it into the engine under the fine-tuned model's name.
    assert served.model in {model.id for model in served.engine.models.list().data}
