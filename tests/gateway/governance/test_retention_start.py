"""Retention's job is scheduled in the background at start, and tried again while the store cannot
be reached: a database down at start must not stop the gateway (it answers 503s meanwhile;
tests/gateway/auth/test_auth.py::test_database_down_is_503)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gateway import governance as governance_module
from gateway.governance import Governance


class _FlakyRetention:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def schedule(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("the store is down")


def test_scheduling_is_retried_until_the_store_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(governance_module, "_FIRST_RETRY_S", 0.01)
    retention = _FlakyRetention(failures=3)
    governed = Governance(usage=cast(Any, None), retention=cast(Any, retention))

    async def run() -> None:
        await governed.start()  # returns at once, whatever the store does
        for _ in range(200):
            if retention.calls > retention.failures:
                break
            await asyncio.sleep(0.01)
        await governed.stop()

    asyncio.run(run())
    assert retention.calls == 4


def test_stop_cancels_a_scheduling_still_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(governance_module, "_FIRST_RETRY_S", 30.0)
    retention = _FlakyRetention(failures=10)
    governed = Governance(usage=cast(Any, None), retention=cast(Any, retention))

    async def run() -> None:
        await governed.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(governed.stop(), 1.0)

    asyncio.run(run())
    assert retention.calls == 1
