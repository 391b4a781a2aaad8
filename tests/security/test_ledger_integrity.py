"""Issue 16, point 1: a NUL byte in `model` stopped every ledger write on PostgreSQL. What a client
writes in `model` never reaches a ledger row, and a row the database refuses is set aside instead
of blocking the rest."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.store import Database, Store, UsageLedger
from tests.security.rows import usage_row
from tests.services import PostgresServer

_names = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"ledger_{next(_names)}")


async def test_a_row_the_database_refuses_is_set_aside_and_the_rest_written(postgres_url: str) -> None:
    database = Database(postgres_url)
    await database.migrate()
    store = Store(database)
    ledger = UsageLedger(store, flush_interval_s=60, batch_size=500)
    try:
        for number in range(6):
            ledger.record(usage_row(f"good-{number}", "m"))
            if number == 2:
                ledger.record(usage_row("bad", "x\x00"))
        await ledger.flush()
        rows = await store.usage_rows()
        set_aside = await store.dead_letters()
    finally:
        await database.close()
    assert sorted(row.request_id for row in rows) == [f"good-{number}" for number in range(6)]
    assert (ledger.written, ledger.set_aside, ledger.pending) == (6, 1, 0)
    [kept] = set_aside
    assert kept.request_id == "bad" and "\\u0000" in kept.row


def test_a_nul_byte_in_model_never_reaches_the_ledger(
    gateway_settings: Callable[..., Settings], postgres_url: str
) -> None:
    settings = gateway_settings(auth_enabled=False, database_url=postgres_url)
    with TestClient(create_app(settings)) as client:
        chat = client.post("/v1/chat/completions", json={"model": "x\u0000", "messages": []})
        heard = client.post(
            "/v1/audio/transcriptions",
            data={"model": "x\u0000"},
            files={"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")},
        )
    assert chat.status_code >= 400 and heard.status_code == 404

    async def read() -> list[str]:
        database = Database(postgres_url)
        try:
            return [row.model for row in await Store(database).usage_rows()]
        finally:
            await database.close()

    assert asyncio.run(read()) == ["(unknown)", "(unknown)"]
