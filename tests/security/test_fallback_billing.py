"""Issue 16, point 4: a free local model that falls back to a paid provider was charged $0, under
the local model's name. The ledger now records the model asked for and the model that answered,
and prices the request by the one that answered; /admin/usage groups and filters by it. A spend
budget reserves at the price of the dearest model that may answer."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.store import Database, Store
from tests.servers import ThreadedServer
from tests.services import PostgresServer

_names = itertools.count()
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
# USD per million tokens: 1000 * 2 + 500 * 10 = 7000 micro-USD.
PRICE = {"prompt": 2.0, "completion": 10.0}
COST_MICROS = 7000


async def _models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "provider-model", "object": "model"}]})


async def _chat(request: Request) -> Response:
    payload = await request.json()
    base = {"id": "chatcmpl-p", "created": 1, "model": payload["model"]}
    if not payload.get("stream"):
        message = {"role": "assistant", "content": "paid words"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": USAGE})

    async def events() -> AsyncIterator[bytes]:
        chunk = {**base, "object": "chat.completion.chunk"}
        delta = {"index": 0, "delta": {"role": "assistant", "content": "paid words"}, "finish_reason": None}
        yield b"data: " + orjson.dumps({**chunk, "choices": [delta]}) + b"\n\n"
        end = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield b"data: " + orjson.dumps({**chunk, "choices": [end]}) + b"\n\n"
        yield b"data: " + orjson.dumps({**chunk, "choices": [], "usage": USAGE}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _down(_: Request) -> JSONResponse:
    return JSONResponse({"error": {"message": "engine unavailable"}}, status_code=503)


@pytest.fixture(scope="module")
def provider() -> Iterator[ThreadedServer]:
    routes = [Route("/v1/models", _models), Route("/v1/chat/completions", _chat, methods=["POST"])]
    with ThreadedServer(Starlette(routes=routes)) as server:
        yield server


@pytest.fixture(scope="module")
def local() -> Iterator[ThreadedServer]:
    routes = [Route("/{path:path}", _down, methods=["GET", "POST"])]
    with ThreadedServer(Starlette(routes=routes)) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"fallback_{next(_names)}")


def _settings(
    gateway_settings: Callable[..., Settings],
    local: ThreadedServer,
    provider: ThreadedServer,
    url: str,
    auth_enabled: bool = False,
) -> Settings:
    return gateway_settings(
        auth_enabled=auth_enabled,
        database_url=url,
        retry_attempts=1,
        upstreams={
            "local": {"url": local.url},
            "provider": {"url": provider.url, "kind": "openai", "api_key_env": "TEST_PROVIDER_KEY"},
        },
        models={
            "chat": {"upstreams": ["local"], "fallbacks": ["chat-ext"]},
            "chat-ext": {"upstreams": ["provider"], "served_name": "provider-model"},
        },
        model_prices={"chat-ext": PRICE},  # the local model is free
    )


async def _rows(url: str) -> list[Any]:
    database = Database(url)
    try:
        return await Store(database).usage_rows()
    finally:
        await database.close()


def test_a_fallback_is_charged_at_the_price_of_the_model_that_answered(
    gateway_settings: Callable[..., Settings],
    local: ThreadedServer,
    provider: ThreadedServer,
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
    admin_key: str,
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "pk-test")
    settings = _settings(gateway_settings, local, provider, ledger_url)
    messages = [{"role": "user", "content": "hi"}]
    with TestClient(create_app(settings)) as client:
        whole = client.post("/v1/chat/completions", json={"model": "chat", "messages": messages})
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["message"]["content"] == "paid words"
        streamed = client.post(
            "/v1/chat/completions", json={"model": "chat", "messages": messages, "stream": True}
        )
        assert streamed.status_code == 200 and "paid words" in streamed.text
        report = client.get(
            "/admin/usage",
            params={"group_by": "model,served_model", "served_model": "chat-ext"},
            headers={"authorization": f"Bearer {admin_key}"},
        )

    rows = asyncio.run(_rows(ledger_url))
    assert [(row.model, row.cost_micros) for row in rows] == [("chat", COST_MICROS)] * 2
    assert [row.served_model for row in rows] == ["chat-ext", "chat-ext"]
    assert [(row.prompt_tokens, row.completion_tokens) for row in rows] == [(1000, 500)] * 2

    assert report.status_code == 200, report.text
    [total] = report.json()["data"]
    assert (total["model"], total["served_model"], total["requests"]) == ("chat", "chat-ext", 2)
    assert total["cost_usd"] == pytest.approx(2 * COST_MICROS / 1_000_000)


def test_a_spend_budget_counts_the_price_of_a_paid_fallback_before_it_answers(
    gateway_settings: Callable[..., Settings],
    local: ThreadedServer,
    provider: ThreadedServer,
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
    admin_key: str,
) -> None:
    """The reservation is priced by the dearest model that may answer: 100 completion tokens at the
    fallback's price (1000 micro-USD) do not fit a budget of 500, although the model asked for is
    free. (On the old code the request was admitted at $0 and charged nothing.)"""
    monkeypatch.setenv("TEST_PROVIDER_KEY", "pk-test")
    settings = _settings(gateway_settings, local, provider, ledger_url, auth_enabled=True)
    with TestClient(create_app(settings)) as client:
        admin = {"authorization": f"Bearer {admin_key}"}
        tenant = client.post("/admin/tenants", json={"name": "fallback-budget"}, headers=admin).json()
        created = client.post(
            "/admin/keys",
            json={"tenant_id": tenant["id"], "budget_usd": 0.0005, "budget_period": "day"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100},
            headers={"authorization": f"Bearer {created.json()['key']}"},
        )
    assert answer.status_code == 429, answer.text
    assert "budget" in answer.json()["error"]["message"]
