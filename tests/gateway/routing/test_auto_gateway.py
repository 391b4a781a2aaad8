"""Virtual models through the whole gateway in process, over a stand-in engine (fake_engine.py):
`auto` listed in /v1/models, the choice in the body the engine is sent, the response's `model`, the
`x-tantra-model-choice` header, the ledger and the span, for chat (JSON, an image, a stream),
completions and the Responses API; the centroids computed at startup; the key's allowed models; a
live reload. The real engines: test_auto_engine.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionChunk, ChatCompletionToolParam
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer
from tests.gateway.routing.fake_engine import FakeEngine
from tests.servers import ThreadedServer

CODE = ["write a python function that sorts a list", "fix the bug in this python code"]
# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SMALL_TALK = ["hello how are you today", "tell me about your weekend"]


def config(default: str = "small") -> dict[str, Any]:
    task = {
        "type": "task",
        "embedding_model": "emb",
        "tasks": {
            "code": {"examples": CODE, "models": ["large"]},
            "chat": {"examples": SMALL_TALK, "models": ["small"]},
        },
        "min_similarity": 0.2,
    }
    auto = {
        "candidates": {
            "small": {"features": []},
            "large": {"features": ["tools", "json_schema"]},
            "vision": {"features": []},
        },
        "rules": [{"type": "modality"}, {"type": "context"}, {"type": "features"}, task],
        "default": default,
    }
    # `vision` takes images itself (its route's `accepts`, which media processing reads too).
    return {"virtual_models": {"auto": auto}, "models": {"vision": {"accepts": ["text", "image"]}}}


class Gateway:
    def __init__(
        self, url: str, engine: FakeEngine, spans: InMemorySpanExporter, config: Path, admin: AdminClient
    ):
        self.url, self.engine, self.spans, self.config, self.admin = url, engine, spans, config, admin
        tenant = admin.tenant("auto-" + uuid.uuid4().hex[:6])
        self.tenant = tenant
        self.key, self.key_row = admin.key(tenant["id"], "auto")
        self.client = openai.OpenAI(base_url=url + "/v1", api_key=self.key, max_retries=0)


@pytest.fixture(scope="module")
def gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("auto")
    path = tmp / "tantra.yaml"
    path.write_text(yaml.safe_dump(config(), sort_keys=False))
    engine = FakeEngine()
    spans = InMemorySpanExporter()
    with ThreadedServer(engine.app) as fake:
        settings = gateway_settings(engine_url=fake.url, config_file=path, config_poll_s=0.1)
        app = create_app(settings, span_processor=SimpleSpanProcessor(spans))
        with ThreadedServer(app) as server:
            admin = AdminClient(server.url, admin_key)
            gw = Gateway(server.url, engine, spans, path, admin)
            yield gw
            gw.client.close()
            admin.close()


def chat(gw: Gateway, content: Any, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=bearer(gw.key), timeout=30)


def test_the_centroids_are_computed_at_startup(gateway: Gateway) -> None:
    deadline = time.monotonic() + 10
    while not any(body.get("model") == "emb" for body in gateway.engine.bodies):
        assert time.monotonic() < deadline, "no embeddings call at startup"
        time.sleep(0.05)
    assert gateway.engine.bodies[0]["input"] == CODE + SMALL_TALK  # no request has been made


def test_auto_is_listed_with_its_candidates(gateway: Gateway) -> None:
    ids = [model.id for model in gateway.client.models.list()]
    assert ids[:4] == ["small", "large", "emb", "vision"] and "auto" in ids
    card = gateway.client.models.retrieve("auto")
    assert card.owned_by == "tantra"
    assert card.model_extra == {
        "tantra_virtual": {
            "candidates": ["small", "large", "vision"],
            "rules": ["modality", "context", "features", "task"],
        }
    }


def test_long_prompt_goes_to_the_long_context_model(gateway: Gateway) -> None:
    answer = chat(gateway, "word " * 400, max_tokens=8)  # ~500 tokens: over small's 256
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tantra-model-choice"] == "large; rule=context"
    assert answer.json()["model"] == "large"
    assert gateway.engine.bodies[-1]["model"] == "large"


def test_an_image_goes_to_the_model_taking_images(gateway: Gateway) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}
    answer = chat(gateway, [{"type": "text", "text": "what is this?"}, image], max_tokens=4)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-tantra-model-choice"] == "vision; rule=modality"
    assert gateway.engine.bodies[-1]["model"] == "vision"
    assert gateway.engine.bodies[-1]["messages"][0]["content"][1]["type"] == "image_url"


def test_tools_in_a_stream_go_to_the_model_declaring_them(gateway: Gateway) -> None:
    tool: ChatCompletionToolParam = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with gateway.client.chat.completions.with_streaming_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], tools=[tool], stream=True
    ) as response:
        assert response.headers["x-tantra-model-choice"] == "large; rule=features"
        chunks: list[ChatCompletionChunk] = list(response.parse())
    assert {chunk.model for chunk in chunks} == {"large"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"


def test_the_classifier_picks_by_task_in_completions(gateway: Gateway) -> None:
    for prompt, model in (
        ("please write a python function for me", "large"),
        ("hello, how was your weekend", "small"),
    ):
        response = gateway.client.completions.with_raw_response.create(
            model="auto", prompt=prompt, max_tokens=4
        )
        task = "code" if model == "large" else "chat"
        assert response.headers["x-tantra-model-choice"] == f"{model}; rule=task:{task}"
        assert response.parse().model == model
    # The centroids once (four examples in one call), then one call per prompt.
    embedded = [len(body["input"]) for body in gateway.engine.bodies if body.get("model") == "emb"]
    assert embedded[0] == 4 and set(embedded[1:]) == {1}


def test_responses_api_and_the_ledger_and_the_span(gateway: Gateway) -> None:
    response = gateway.client.responses.with_raw_response.create(
        model="auto", input="x " * 600, max_output_tokens=8, store=False
    )
    assert response.headers["x-tantra-model-choice"] == "large; rule=context"
    assert response.parse().model == "large"
    assert gateway.engine.bodies[-1]["model"] == "large"
    spans = [
        s
        for s in gateway.spans.get_finished_spans()
        if s.attributes and "tantra.model_choice.rule" in s.attributes
    ]
    assert spans and spans[-1].attributes is not None
    assert spans[-1].attributes["tantra.model_choice.model"] == "large"
    assert spans[-1].attributes["tantra.model_choice.virtual"] == "auto"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        models = {row["model"] for row in gateway.admin.usage(key_id=gateway.key_row["id"], group_by="model")}
        if {"small", "large", "vision"} <= models:
            break
        time.sleep(0.1)
    assert models == {"small", "large", "vision"}  # the chosen models are billed; `auto` never is


def test_only_the_candidates_the_key_may_use(gateway: Gateway) -> None:
    tenant = gateway.tenant["id"]
    narrow, _ = gateway.admin.key(tenant, "narrow", allowed_models=["auto", "small"])
    body = {"model": "auto", "messages": [{"role": "user", "content": "word " * 400}]}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=bearer(narrow), timeout=30)
    assert answer.headers["x-tantra-model-choice"] == "small; rule=default"
    no_auto, _ = gateway.admin.key(tenant, "no-auto", allowed_models=["small", "large"])
    refused = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=bearer(no_auto), timeout=30)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    assert refused.json()["error"]["param"] == "model"


def test_a_live_reload_changes_the_next_choice(gateway: Gateway) -> None:
    assert chat(gateway, "hello how are you").headers["x-tantra-model-choice"] == "small; rule=task:chat"
    changed = config(default="large")
    changed["virtual_models"]["auto"]["rules"] = [{"type": "context"}]
    gateway.config.write_text(yaml.safe_dump(changed, sort_keys=False))
    deadline = time.monotonic() + 10
    while chat(gateway, "hello").headers["x-tantra-model-choice"] != "large; rule=default":
        assert time.monotonic() < deadline, "the reload did not apply"
        time.sleep(0.1)
    # New examples: their centroids are computed on the reload, before any request needs them.
    restored = config()
    restored["virtual_models"]["auto"]["rules"][3]["tasks"]["code"]["examples"] = [
        *CODE,
        "implement quicksort in c",
    ]
    gateway.config.write_text(yaml.safe_dump(restored, sort_keys=False))
    while not any(body.get("model") == "emb" and len(body["input"]) == 5 for body in gateway.engine.bodies):
        assert time.monotonic() < deadline + 10, "the new centroids were not computed on the reload"
        time.sleep(0.05)
