"""Issue 16, point 15: ledger durability. Each row is keyed by an id the gateway makes (clients
reuse x-request-id; theirs is kept apart), unique in the table, so a write retried after a commit
whose answer was lost adds nothing; rows recorded while a batch is being written are never popped
in its place; and what is buffered when the gateway gets SIGTERM is written before it exits."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.store import Database, Store, UsageLedger, UsageRow
from gateway.store.database import alembic_config
from gateway.store.models import UsageRecord
from tests.gateway.helpers import wait_for
from tests.security.rows import usage_row
from tests.servers import free_port
from tests.services import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[2]

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"durability_{next(_names)}")


async def _written(url: str) -> list[str]:
    database = Database(url)
    try:
        return [row.request_id for row in await Store(database).usage_rows()]
    finally:
        await database.close()


class _LostAnswer(Store):
    """A database whose first commit lands but whose answer is lost (the connection drops)."""

    lost = 0

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        await super().add_usage(rows)
        if not self.lost:
            self.lost += 1
            raise OperationalError("INSERT INTO usage", {}, ConnectionResetError("connection lost"))


async def test_a_write_retried_after_a_lost_commit_adds_no_row(ledger_url: str) -> None:
    database = Database(ledger_url)
    await database.migrate()
    ledger = UsageLedger(_LostAnswer(database), flush_interval_s=60, batch_size=10)
    try:
        for number in range(3):
            ledger.record(usage_row(f"r{number}"))
        with pytest.raises(OperationalError):
            await ledger.flush()
        assert ledger.pending == 3  # not known to be written: kept for the next try
        await ledger.flush()
    finally:
        await database.close()
    assert sorted(await _written(ledger_url)) == ["r0", "r1", "r2"]


class _Slow(Store):
    """A database whose writes wait until the test lets them through."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.writing = asyncio.Event()
        self.go = asyncio.Event()
        self.writes = 0

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        self.writes += 1
        self.writing.set()
        await self.go.wait()
        await super().add_usage(rows)


async def test_rows_recorded_during_a_write_are_not_popped_in_its_place(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    database = Database(url)
    await database.migrate()
    store = _Slow(database)
    ledger = UsageLedger(store, flush_interval_s=60, batch_size=2, max_buffered=4)
    try:
        for number in range(4):
            ledger.record(usage_row(f"r{number}"))
        flushing = asyncio.create_task(ledger.flush())
        await asyncio.wait_for(store.writing.wait(), 10)  # r0 and r1 are being written
        ledger.record(usage_row("r4"))
        ledger.record(usage_row("r5"))
        store.go.set()
        await asyncio.wait_for(flushing, 30)
    finally:
        await database.close()
    # The buffer never held more than four waiting rows: nothing had to be dropped.
    assert sorted(await _written(url)) == [f"r{number}" for number in range(6)]
    assert (ledger.dropped, ledger.pending) == (0, 0)


async def test_close_lets_a_write_under_way_finish(ledger_url: str) -> None:
    """Shutdown waits for the background task's write instead of cancelling it mid-commit (on
    SQLite the cancelled connection's rollback failed and both rows were lost, once in a CI run)."""
    database = Database(ledger_url)
    await database.migrate()
    store = _Slow(database)
    ledger = UsageLedger(store, flush_interval_s=0.01, batch_size=10)
    ledger.start()
    try:
        ledger.record(usage_row("r0"))
        ledger.record(usage_row("r1"))
        await asyncio.wait_for(store.writing.wait(), 10)  # the background task is writing
        closing = asyncio.create_task(ledger.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # it waits for the write
        store.go.set()
        await asyncio.wait_for(closing, 30)
    finally:
        await database.close()
    assert sorted(await _written(ledger_url)) == ["r0", "r1"]
    assert (store.writes, ledger.written, ledger.pending) == (1, 2, 0)  # one write, not cancelled


def test_a_reused_client_request_id_gets_rows_of_its_own(
    gateway_settings: Callable[..., Settings], ledger_url: str
) -> None:
    settings = gateway_settings(auth_enabled=False, database_url=ledger_url)
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post(
                "/v1/chat/completions",
                json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-request-id": "client-id-1"},
            )
            for _ in range(2)
        ]
    assert [answer.headers["x-request-id"] for answer in answers] == ["client-id-1", "client-id-1"]

    async def read() -> list[tuple[str, str | None]]:
        database = Database(ledger_url)
        try:
            rows = await Store(database).usage_rows()
        finally:
            await database.close()
        return [(row.request_id, getattr(row, "client_request_id", None)) for row in rows]

    rows = asyncio.run(read())
    ids = [request_id for request_id, _ in rows]
    assert len(ids) == 2 and len(set(ids)) == 2, ids  # one row each, under the gateway's own ids
    assert "client-id-1" not in ids
    assert [client_id for _, client_id in rows] == ["client-id-1", "client-id-1"]


def test_rows_buffered_at_sigterm_are_written(
    ledger_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A real `python -m gateway` told to stop: its buffered rows (never flushed: an hour's interval
    and a batch far larger than the traffic) are in the database once it has exited."""
    port = free_port()
    env = {
        **os.environ,
        "TANTRA_HOST": "127.0.0.1",
        "TANTRA_PORT": str(port),
        "TANTRA_ENGINE_URL": f"http://127.0.0.1:{free_port()}",
        "TANTRA_REDIS_URL": redis_server.url,
        "TANTRA_DATABASE_URL": ledger_url,
        "TANTRA_AUTH_ENABLED": "false",
        "TANTRA_HEALTH_DEEP": "false",
        "TANTRA_LEDGER_FLUSH_INTERVAL_S": "3600",
        "TANTRA_LEDGER_BATCH_SIZE": "10000",
        "TANTRA_DRAIN_GRACE_S": "2",
        "TANTRA_LOG_LEVEL": "warning",
    }
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()[-2000:]
            try:
                return httpx.get(url + "/livez", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, interval=0.2)
        for _ in range(3):
            # Refused (no engine is needed for that), and each refusal is a ledger row.
            body = {"model": "no-such-model", "messages": []}
            answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 400, answer.text
        assert asyncio.run(_written(ledger_url)) == []  # all three still buffered
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert len(asyncio.run(_written(ledger_url))) == 3


async def test_the_migration_keeps_rows_whose_client_reused_an_id(ledger_url: str) -> None:
    """Rows written before the id was unique carry clients' ids, repeated: the upgrade keeps them
    all, the first under its id and each repeat under the id with its row number appended."""
    database = Database(ledger_url)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0003"))
        # Revision 0003's columns: the model has more now.
        old_columns = {"created_at", "request_id", "model", "endpoint", "stream", "prompt_tokens"}
        old_columns |= {"completion_tokens", "cost_micros", "latency_ms", "status", "outcome"}
        rows = [usage_row(request_id).as_row() for request_id in ("same", "same", "other", "same")]
        async with database.engine.begin() as conn:
            await conn.execute(insert(UsageRecord), [{c: row[c] for c in old_columns} for row in rows])
        await database.migrate()
        ids = [row.request_id for row in await Store(database).usage_rows()]
        with pytest.raises(IntegrityError):  # and the index is unique from now on
            async with database.session() as session:
                await session.execute(insert(UsageRecord).values(**usage_row("other").as_row()))
                await session.commit()
    finally:
        await database.close()
    assert ids == ["same", "same~2", "other", "same~4"]
