"""`auto` on the real engines: the session's chat engine under two model names (`tantra-tiny`, whose
declared context is short and which declares no tools, and `tiny-long`, the same engine through a
model route with `served_name`, declared with its whole context and tools) and the session's
embedding engine (all-MiniLM-L6-v2) for the task classifier. A gateway of its own: it needs the
virtual model and the alias in its settings; it reuses both session engines (none started here)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionToolParam

from gateway import Settings, create_app
from tests.conftest import EMBEDDING_MODEL, MODEL
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

LONG = "tiny-long"
CHOICE = "x-tantra-model-choice"
AUTO = {
    "candidates": {MODEL: {"context_length": 256, "features": []}, LONG: {"features": ["tools", "logprobs"]}},
    "rules": [
        {"type": "context"},
        {"type": "features"},
        {
            "type": "task",
            "embedding_model": EMBEDDING_MODEL,
            "min_similarity": 0.1,
            "tasks": {
                "code": {
                    "examples": [
                        "Write a Python function that parses a CSV file.",
                        "Fix the bug in this JavaScript code: the loop never ends.",
                        "Implement binary search in Rust.",
                    ],
                    "models": [LONG],
                },
                "chat": {
                    "examples": [
                        "Hi! How are you doing today?",
                        "Tell me something nice about your weekend.",
                        "Good morning, what a lovely day.",
                    ],
                    "models": [MODEL],
                },
            },
        },
    ],
    "default": MODEL,
}


@pytest.fixture(scope="module")
def gateway(
    engine_url: str, embedding_engine_url: str, gateway_settings: Callable[..., Settings], admin_key: str
) -> Iterator[tuple[openai.OpenAI, AdminClient, str]]:
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        models={MODEL: {"upstreams": ["engine"]}, LONG: {"upstreams": ["engine"], "served_name": MODEL}},
        routing={"default_model": MODEL},
        virtual_models={"auto": AUTO},
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("auto-engine-" + uuid.uuid4().hex[:6])
        secret, key = admin.key(tenant["id"], "auto")
        with openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=120) as client:
            yield client, admin, key["id"]
        admin.close()


def ask(client: openai.OpenAI, content: str, **extra: Any) -> tuple[str, str]:
    """(the choice header, the answer's model)."""
    response = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": content}], max_tokens=4, **extra
    )
    return response.headers[CHOICE], response.parse().model


def test_auto_chooses_by_context_tools_and_task(gateway: tuple[openai.OpenAI, AdminClient, str]) -> None:
    client, admin, key_id = gateway
    assert "auto" in [model.id for model in client.models.list()]
    # ~320 estimated tokens: over tantra-tiny's declared 256, within the engine's real 2048.
    assert ask(client, "word " * 250)[0] == f"{LONG}; rule=context"
    tool: ChatCompletionToolParam = {"type": "function", "function": {"name": "now", "parameters": {}}}
    assert ask(client, "What time is it?", tools=[tool])[0] == f"{LONG}; rule=features"
    # The classifier over the real embedding model, for two tasks.
    assert (
        ask(client, "Please write a Python function that reverses a linked list.")[0]
        == f"{LONG}; rule=task:code"
    )
    header, served = ask(client, "Hello there, how has your day been?")
    assert header == f"{MODEL}; rule=task:chat"
    assert served == MODEL
    # A stream chooses too, and every chunk names the engine's model.
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=[{"role": "user", "content": "word " * 250}], max_tokens=4, stream=True
    ) as response:
        assert response.headers[CHOICE] == f"{LONG}; rule=context"
        assert {chunk.model for chunk in response.parse()} == {MODEL}
    # The ledger bills the chosen models, never `auto`.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = {row["model"]: row for row in admin.usage(key_id=key_id, group_by="model")}
        if rows.keys() == {MODEL, LONG} and sum(row["requests"] for row in rows.values()) == 5:
            break
        time.sleep(0.2)
    assert rows.keys() == {MODEL, LONG}
    assert rows[LONG]["requests"] == 4 and rows[MODEL]["requests"] == 1
