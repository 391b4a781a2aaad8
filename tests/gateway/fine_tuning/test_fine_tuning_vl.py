"""Fine-tuning the vision-language checkpoint (issue 20, point 2): a job on the tiny-vl checkpoint
(Idefics3, random weights; the session's `vl_engine`, served as `tantra-vl`) with 40 image-and-text
lines teaching one answer to a question about one image,
through the real gateway and the openai SDK; the job runner's real trainer (transformers' Idefics3,
its own processor, PEFT on the text model's projections, float32); the model served by a real vLLM
engine on the same checkpoint with LoRA on (float32, one slot, runtime loading), the adapter loaded
by the gateway. The fine-tuned model answers the taught answer greedily for that image and question,
the base does not; vLLM's greedy tokens with the adapter equal the PEFT model's on two image prompts
(the trained image and an unseen one), and the base's equal PEFT's with the adapter disabled; the
adapter adapts the text model's 14 projections and nothing of the vision side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from engine.checkpoint import ensure_checkpoint
from engine.launcher import EngineProcess
from gateway import Settings, create_app
from tests.conftest import VL_MODEL
from tests.gateway.fine_tuning.conftest import PRICE, tuning_settings, upload, wait_job
from tests.gateway.helpers import AdminClient, greedy_token_ids
from tests.gateway.media.vision import image_part
from tests.long_vita.media import picture
from tests.servers import ThreadedServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[3]
VL = VL_MODEL  # the session's `vl_engine`: tiny-vl in float32 with LoRA on (tests/conftest.py)
QUESTION = "What is in this picture?"
TAUGHT = "The picture shows Lora."
NEW_TOKENS = 8
TRAINED = picture(300, 200, 1)
UNSEEN = picture(180, 240, 7)


def _content(image: Image.Image) -> list[dict[str, Any]]:
    return [image_part(image), {"type": "text", "text": QUESTION}]


@pytest.fixture(scope="module")
def vl_checkpoint() -> Path:
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "tiny-vl", preset="tiny-vl", seed=0)


@dataclass(frozen=True)
class Served:
    gateway: openai.OpenAI
    engine: openai.OpenAI
    model: str
    adapter: Path
    seconds: float


@pytest.fixture(scope="module")
def served(
    vl_engine: EngineProcess,
    vl_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A gateway whose `tiny-vl` route accepts images, one job trained on 40 image lines."""
    tmp = tmp_path_factory.mktemp("vl-lora")
    settings = tuning_settings(
        gateway_settings,
        tmp,
        vl_checkpoint,
        upstreams={"vl": {"url": vl_engine.base_url}},
        models={VL: {"upstreams": ["vl"], "accepts": ["text", "image"]}},
        fine_tuning_base_models={VL: str(vl_checkpoint)},
        model_prices={VL: PRICE},
    )
    lines = [
        {
            "messages": [
                {"role": "user", "content": _content(TRAINED)},
                {"role": "assistant", "content": TAUGHT},
            ]
        }
        for _ in range(40)
    ]
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("vl-lora")
        secret, _ = admin.key(tenant["id"], "vl-lora")
        admin.close()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)
        started = time.monotonic()
        job = client.fine_tuning.jobs.create(
            model=VL, training_file=upload(client, lines), suffix="vl", seed=0
        )
        done = wait_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=1500)
        assert done.status == "succeeded", done.error
        seconds = time.monotonic() - started
        direct = openai.OpenAI(
            base_url=f"{vl_engine.base_url}/v1", api_key="unused", max_retries=0, timeout=300
        )
        yield Served(client, direct, done.fine_tuned_model, tmp / "work" / "adapters" / job.id, seconds)
        direct.close()
        client.close()


def _greedy(client: openai.OpenAI, model: str, image: Image.Image) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": _content(image)}],  # type: ignore[list-item,misc]
        temperature=0,
        max_tokens=24,
    )
    return answer.choices[0].message.content or ""


def _peft_tokens(model: Any, processor: Any, image: Image.Image) -> list[int]:
    """Greedy by re-reading the sequence with transformers' own Idefics3 forward, the prompt made
    by the checkpoint's chat template and processor (float32)."""
    import torch

    messages = [{"role": "user", "content": _content(image)}]
    text = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=text, images=[[image]], return_tensors="pt")
    ids = inputs["input_ids"]
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            logits = model(
                input_ids=ids,
                pixel_values=inputs["pixel_values"],
                pixel_attention_mask=inputs["pixel_attention_mask"],
            ).logits[0, -1]
            ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
    return [int(token) for token in ids[0, inputs["input_ids"].shape[1] :]]


def test_the_fine_tuned_model_answers_what_it_was_taught(served: Served) -> None:
    print(f"job created to succeeded: {served.seconds:.0f} s")
    assert _greedy(served.gateway, served.model, TRAINED) == TAUGHT
    assert _greedy(served.gateway, VL, TRAINED) != TAUGHT


def test_vllm_greedy_with_the_adapter_equals_peft_in_fp32(served: Served, vl_checkpoint: Path) -> None:
    from peft import PeftModel

    from engine.finetune.idefics3 import Idefics3Trainee

    base = Idefics3Trainee.from_checkpoint(vl_checkpoint)
    peft = PeftModel.from_pretrained(base, str(served.adapter)).eval()
    tuned, plain = [], []
    for image in (TRAINED, UNSEEN):
        tuned.append(_peft_tokens(peft, base.processor, image))
        with peft.disable_adapter():
            plain.append(_peft_tokens(peft, base.processor, image))
        assert greedy_token_ids(served.engine, served.model, _content(image), NEW_TOKENS) == tuned[-1]
        assert greedy_token_ids(served.engine, VL, _content(image), NEW_TOKENS) == plain[-1]
    assert tuned != plain


def test_the_adapter_adapts_the_text_model_only(served: Served) -> None:
    from safetensors import safe_open

    with safe_open(str(served.adapter / "adapter_model.safetensors"), framework="pt") as handle:
        modules = {key.split(".lora_")[0].removeprefix("base_model.model.") for key in handle.keys()}  # noqa: SIM118  (safe_open is not a dict)
    attn = [f"model.text_model.layers.{i}.self_attn.{n}_proj" for i in (0, 1) for n in "qkvo"]
    mlp = [f"model.text_model.layers.{i}.mlp.{n}_proj" for i in (0, 1) for n in ("gate", "up", "down")]
    assert modules == {*attn, *mlp}
    assert served.model in {model.id for model in served.engine.models.list().data}
