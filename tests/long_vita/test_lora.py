"""LoRA on Long-VITA (issue 28, point 6): a fine-tuning job through the gateway's API on base
`tiny-long-vita` adapts its language model on image-and-text chat examples (data URLs, tiled as
serving tiles them), and vLLM serves the adapter (loaded at run time by the gateway into the
session's float32 Long-VITA engine, which has LoRA on) with the plugin's `SupportsLoRA`. vLLM's
greedy tokens with the adapter equal the trainer-side PEFT model's on image prompts, and differ
from the base's, which vLLM's base tokens equal too."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from engine.launcher import EngineProcess
from gateway import Settings, create_app
from tests.gateway.fine_tuning.conftest import PRICE, tuning_settings, upload, wait_job
from tests.gateway.helpers import AdminClient, greedy_token_ids
from tests.long_vita.conftest import VITA
from tests.long_vita.media import picture
from tests.servers import ThreadedServer

pytestmark = [
    pytest.mark.engine,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(bool(os.environ.get("TANTRA_SKIP_VLLM")), reason="TANTRA_SKIP_VLLM is set"),
]

BASE = VITA
QUESTION = "What is in this picture?"
TAUGHT = "The picture shows Lora."
NEW_TOKENS = 6
IMAGES = ([896, 448, 101], [448, 448, 300])  # seen (a 2 x 1 grid), unseen
TRAINED = ([448, 448, 100], IMAGES[0])


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def content(image: Image.Image) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": data_url(image)}}, {"type": "text", "text": QUESTION}]


@dataclass(frozen=True)
class Served:
    engine: openai.OpenAI
    gateway: openai.OpenAI
    model: str  # the job's fine-tuned model, as the engine holds it
    adapter: Path


@pytest.fixture(scope="module")
def served(
    long_vita_checkpoint: Path,
    vita_engine: EngineProcess,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A fine-tuning job through the gateway (openai SDK: the file uploaded, the job created on base
    `tiny-long-vita` and polled to `succeeded`) on 10 image-and-text lines, run by the job runner's
    trainer; the gateway loads the adapter into the session's Long-VITA engine at the first request
    for the job's model, as it serves any tenant's adapter."""
    tmp = tmp_path_factory.mktemp("vita-lora")
    lines = [
        {
            "messages": [
                {"role": "user", "content": content(picture(*TRAINED[i % 2]))},
                {"role": "assistant", "content": TAUGHT},
            ]
        }
        for i in range(10)
    ]
    settings = tuning_settings(
        gateway_settings,
        tmp,
        long_vita_checkpoint,
        upstreams={"vita": {"url": vita_engine.base_url}},
        models={BASE: {"upstreams": ["vita"], "accepts": ["text", "image"]}},
        fine_tuning_base_models={BASE: str(long_vita_checkpoint)},
        model_prices={BASE: PRICE},
        fine_tuning_threads=2,
    )
    hyper = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 10}  # 2e-2
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("vita-lora")
        secret, _ = admin.key(tenant["id"], "vita-lora")
        gateway = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)
        job = gateway.fine_tuning.jobs.create(
            model=BASE,
            training_file=upload(gateway, lines),
            suffix="vita",
            seed=0,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},  # type: ignore[arg-type]
        )
        done = wait_job(gateway, job.id, {"succeeded", "failed", "cancelled"}, timeout=1200)
        assert done.status == "succeeded", done.error
        model = done.fine_tuned_model
        assert model is not None and model.startswith(f"ft:{BASE}:")
        # The gateway's first request for the model loads its adapter into the engine.
        first: Any = [{"role": "user", "content": content(picture(*IMAGES[1]))}]
        gateway.chat.completions.create(model=model, messages=first, max_tokens=1)
        engine = openai.OpenAI(
            base_url=f"{vita_engine.base_url}/v1", api_key="unused", max_retries=0, timeout=300
        )
        adapter = Path(settings.fine_tuning_work_dir) / "adapters" / job.id
        yield Served(engine, gateway, model, adapter)
        gateway.models.delete(model)  # unloads it from the engine
        engine.close()
        gateway.close()
        admin.close()


def test_vllm_greedy_with_the_adapter_equals_peft_on_image_prompts(
    served: Served, long_vita_checkpoint: Path, long_vita_tokenizer: Any
) -> None:
    from peft import PeftModel

    from engine.long_vita.reference import expand_prompt
    from engine.long_vita.torch_model import LongVitaTorchForCausalLM

    base = LongVitaTorchForCausalLM.from_checkpoint(long_vita_checkpoint)
    peft = PeftModel.from_pretrained(base, str(served.adapter)).eval()
    text = long_vita_tokenizer.apply_chat_template(
        [{"role": "user", "content": content(picture(8, 8, 0))}], tokenize=False, add_generation_prompt=True
    )
    ids = long_vita_tokenizer(text).input_ids
    tuned, plain = [], []
    for spec in IMAGES:
        image = picture(*spec)
        prompt = expand_prompt(ids, [image])
        tuned.append(base.greedy(prompt, NEW_TOKENS))
        with peft.disable_adapter():
            plain.append(base.greedy(prompt, NEW_TOKENS))
        assert greedy_token_ids(served.engine, served.model, content(image), NEW_TOKENS) == tuned[-1]
        assert greedy_token_ids(served.engine, BASE, content(image), NEW_TOKENS) == plain[-1]
    assert tuned != plain


def test_the_adapter_adapts_the_language_model_only(served: Served) -> None:
    from safetensors import safe_open

    with safe_open(str(served.adapter / "adapter_model.safetensors"), framework="pt") as handle:
        modules = {key.split(".lora_")[0].removeprefix("base_model.model.") for key in handle.keys()}  # noqa: SIM118  (safe_open is not a dict)
    attn = [
        f"model.layers.{i}.self_attn.{n}" for i in (0, 1) for n in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    mlp = [f"model.layers.{i}.mlp.{n}" for i in (0, 1) for n in ("gate_proj", "up_proj", "down_proj")]
    assert modules == {*attn, *mlp}
    assert served.model in {model.id for model in served.engine.models.list().data}
    # ... and the gateway lists it to its tenant.
    assert served.model in {model.id for model in served.gateway.models.list().data}
