"""What several security tests share: a Redis client on the suite's server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.clients import redis_client
from gateway.settings.schema import Settings
from tests.services import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client(Settings(redis_url=redis_server.url))
    yield client
    await client.aclose()
