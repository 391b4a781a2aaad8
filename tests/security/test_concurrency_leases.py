"""Issue 16, point 3: a concurrency slot is not lost to a failed settlement, nor held for long by a
replica that died. A settlement Redis refuses is tried again until it lands; slots are short leases
renewed while their request runs (a heartbeat), so a dead replica's slots return within seconds
while a request that runs longer than a lease keeps its own."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from gateway.clients import redis_client
from gateway.errors import RateLimited
from gateway.limits import Demand, RateLimiter, Scope
from gateway.settings.schema import Settings
from gateway.store import Limits
from tests.security.rows import no_ledger
from tests.servers import free_port
from tests.services import RedisServer


def _limiter(redis: Redis, *, lease_s: float, prefix: str) -> RateLimiter:
    return RateLimiter(
        redis, window_s=60, lease_s=lease_s, failure_mode="open", seed=no_ledger, prefix=prefix
    )


async def _admitted(limiter: RateLimiter, scope: Scope) -> bool:
    try:
        reservation = await limiter.reserve([scope], Demand(1))
    except RateLimited:
        return False
    await limiter.settle(reservation, tokens=1)
    return True


class _DurableRedis:
    """A redis-server that keeps its data on disk (AOF, fsync always), so it can be stopped and
    started again with the leases it held."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self._directory),
                "--protected-mode", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


async def test_a_settlement_redis_refuses_is_retried_until_it_lands(tmp_path: Path) -> None:
    server = _DurableRedis(tmp_path)
    server.start()
    client = redis_client(Settings(redis_url=server.url))
    try:
        limiter = _limiter(client, lease_s=60, prefix="sec-settle-retry")
        scope = Scope("key", "k-settle", Limits(max_concurrent=1))
        held = await limiter.reserve([scope], Demand(10))
        server.stop()  # the settlement finds Redis refusing connections
        settling = asyncio.create_task(limiter.settle(held, tokens=10))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(settling, 15)
        limiter.retry_redis_after_s = 0.0
        await asyncio.sleep(1.0)  # past the pause a refused call starts, on any version
        assert await _admitted(limiter, scope), "the slot of a settled request is still held"
    finally:
        await client.aclose()
        server.stop()


async def test_a_running_request_keeps_its_slot_past_the_lease(redis: Redis) -> None:
    limiter = _limiter(redis, lease_s=1, prefix="sec-heartbeat")
    scope = Scope("key", "k-long", Limits(max_concurrent=1))
    running = await limiter.reserve([scope], Demand(10))
    await asyncio.sleep(2.5)  # two and a half leases
    assert not await _admitted(limiter, scope), "a request still running lost its concurrency slot"
    await limiter.settle(running, tokens=10)
    assert await _admitted(limiter, scope)


_REPLICA = """
import asyncio, sys
from gateway.clients import redis_client
from gateway.limits import Demand, RateLimiter, Scope
from gateway.settings.schema import Settings
from gateway.store import Limits

async def main() -> None:
    settings = Settings(redis_url=sys.argv[1])
    async def seed(*_: object) -> tuple[int, int]:
        return 0, 0
    limiter = RateLimiter(redis_client(settings), window_s=60, lease_s=settings.limits_lease_s,
                          failure_mode="open", seed=seed, prefix="sec-dead-replica")
    await limiter.reserve([Scope("key", "k-dead", Limits(max_concurrent=1))], Demand(1))
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_dead_replicas_slots_return_within_seconds(redis: Redis, redis_server: RedisServer) -> None:
    """A replica (with the default settings) admits a request, then is killed without settling it."""
    replica = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _REPLICA, redis_server.url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert replica.stdout is not None
        assert await asyncio.wait_for(replica.stdout.readline(), 30) == b"held\n"
    finally:
        replica.kill()
        await replica.wait()
    limiter = _limiter(redis, lease_s=60, prefix="sec-dead-replica")
    scope = Scope("key", "k-dead", Limits(max_concurrent=1))
    started = time.monotonic()
    while not await _admitted(limiter, scope):
        assert time.monotonic() - started < 20, "a dead replica's slot is still held after 20 s"
        await asyncio.sleep(0.5)
