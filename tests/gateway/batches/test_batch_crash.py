"""Exactly once across a crash: a gateway replica in its own process runs a 500-line batch against
the real engine and is SIGKILLed half-way; a second replica (on the same SQLite store, Redis and
blob directory) takes the batch over once its 2 s lease has run out and finishes it from the last
checkpoint. The output holds each custom_id exactly once, and the ledger one row per line (lines
answered but not committed when the first replica died are sent again; their ledger rows are keyed
by batch and line)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.batches.conftest import read_lines, upload, wait_until
from tests.gateway.helpers import AdminClient, wait_for
from tests.servers import ThreadedServer, free_port

pytestmark = pytest.mark.engine
LINES = 500


def replica_env(settings: Settings, port: int) -> dict[str, str]:
    assert settings.admin_key is not None
    return {
        **os.environ,
        "TANTRA_HOST": "127.0.0.1",
        "TANTRA_PORT": str(port),
        "TANTRA_ENGINE_URL": str(settings.engine_url),
        "TANTRA_REDIS_URL": settings.redis_url,
        "TANTRA_DATABASE_URL": settings.database_url,
        "TANTRA_ADMIN_KEY": settings.admin_key.get_secret_value(),
        "TANTRA_BLOB_DIR": str(settings.blob_dir),
        "TANTRA_JOBS_LEASE_S": "2",
        "TANTRA_JOBS_POLL_S": "0.2",
        "TANTRA_OPERATOR_PORT": "0",
        "TANTRA_HEALTH_DEEP": "false",
        "TANTRA_REJECTION_BUDGET_PER_KEY": "0",
        "TANTRA_REJECTION_BUDGET_PER_ADDRESS": "0",
        "TANTRA_AUTH_FAILURES_PER_ADDRESS": "0",
        "TANTRA_LEDGER_FLUSH_INTERVAL_S": "0.1",
        "TANTRA_MEDIA_ENABLED": "false",
    }


@pytest.fixture
def settings(engine_url: str, gateway_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    # A store of its own: the session's in-process gateways also run jobs and must not take this one.
    return gateway_settings(
        engine_url=engine_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}",
        blob_dir=tmp_path / "blobs",
        jobs_lease_s=2,
        jobs_poll_s=0.2,
    )


@pytest.fixture
def first_replica(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (tmp_path / "replica.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        env=replica_env(settings, port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        assert process.poll() is None, (tmp_path / "replica.log").read_text()
        try:
            return httpx.get(url + "/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(live, timeout=120, interval=0.2)
    yield url, process
    if process.poll() is None:
        process.kill()
    process.wait()
    log.close()


def _ledger(database_url: str, prefix: str) -> list[Any]:
    from sqlalchemy import select

    from gateway.store import Database
    from gateway.store.models import UsageRecord

    async def read() -> list[Any]:
        database = Database(database_url)
        try:
            async with database.session() as session:
                query = select(UsageRecord.request_id).where(UsageRecord.request_id.like(prefix + "-%"))
                return list((await session.execute(query)).scalars())
        finally:
            await database.close()

    return asyncio.run(read())


def test_a_killed_replica_s_batch_is_finished_by_another_exactly_once(
    settings: Settings, first_replica: tuple[str, subprocess.Popen[bytes]], model: str
) -> None:
    url, process = first_replica
    assert settings.admin_key is not None
    admin = AdminClient(url, settings.admin_key.get_secret_value())
    tenant = admin.tenant("crash")
    secret, _ = admin.key(tenant["id"], "crash")
    admin.close()
    lines = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": model, "prompt": f"Count {i}", "max_tokens": 1},
        }
        for i in range(LINES)
    ]
    import openai

    with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0, timeout=60) as client:
        batch = client.batches.create(
            input_file_id=upload(client, lines), endpoint="/v1/completions", completion_window="24h"
        )

        def half_way() -> bool:
            counts = client.batches.retrieve(batch.id).request_counts
            return counts is not None and counts.completed >= LINES // 2

        wait_for(half_way, timeout=600, interval=0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = time.monotonic()

    with (
        ThreadedServer(create_app(settings)) as second,
        openai.OpenAI(base_url=second.url + "/v1", api_key=secret, max_retries=0, timeout=60) as client,
    ):
        at_kill = client.batches.retrieve(batch.id)
        assert at_kill.status == "in_progress"
        assert at_kill.request_counts is not None and at_kill.request_counts.completed < LINES
        done = wait_until(client, batch.id, {"completed", "failed"}, timeout=600)
        assert done.status == "completed", done
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
            LINES,
            LINES,
            0,
        )
        assert time.monotonic() - killed_at > 2  # taken over only once the lease had run out
        output = read_lines(client, done.output_file_id)
        ids = [line["custom_id"] for line in output]
        assert len(ids) == LINES and set(ids) == {f"line-{i}" for i in range(LINES)}
        assert done.error_file_id is None
        # No line doubled in the ledger: the rows are keyed by batch and line, and the lines the second
        # replica sent again found their first row there. The killed replica's last ledger rows still
        # waiting in its write buffer (TANTRA_LEDGER_FLUSH_INTERVAL_S, here 0.1 s) died with it, as an
        # interactive request's would: at most a step or two of lines.
        expected = {f"{batch.id}-{n}" for n in range(1, LINES + 1)}
        rows: list[Any] = []

        def ledgered() -> bool:
            rows[:] = _ledger(settings.database_url, batch.id)
            return len(rows) >= LINES - 16

        wait_for(ledgered, timeout=15, interval=0.3)
        time.sleep(1)
        rows[:] = _ledger(settings.database_url, batch.id)
        assert len(rows) == len(set(rows)) and set(rows) <= expected
        assert len(rows) >= LINES - 16, len(rows)
