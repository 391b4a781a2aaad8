"""Ephemeral client secrets of the Realtime API (`ek_...`, docs/realtime.md).

An API key mints one (POST /v1/realtime/client_secrets, beta's /v1/realtime/sessions) for a
browser or a phone, which must not hold the key itself. The secret opens realtime sessions only
(the WebSocket and WebRTC calls), as its key, with the session configuration it was minted with,
until it expires; anywhere else it is no API key (401). It lives in Redis under the sha256 of its
value with its lifetime as the TTL, so every replica accepts it and none stores the secret.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth.authenticator import presented_key
from gateway.auth.keys import redact
from gateway.auth.principal import Principal
from gateway.errors import AuthenticationFailed, StoreUnavailable

PREFIX = "ek_"
DEFAULT_TTL_S = 60
MIN_TTL_S = 10
MAX_TTL_S = 7200


@dataclass(frozen=True)
class Grant:
    """What an ephemeral secret stands for: its key, and the session it opens."""

    key_id: str | None
    session: dict[str, Any]
    expires_at: int


class EphemeralKeys:
    """Minted and redeemed in Redis, under `tantra:ek:<sha256 of the value>`."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def mint(self, key_id: str | None, session: dict[str, Any], ttl_s: int) -> tuple[str, int]:
        """A new secret for `key_id` and the Unix time it expires at."""
        value = PREFIX + secrets.token_urlsafe(32)
        expires_at = int(time.time()) + ttl_s
        grant = {"key_id": key_id, "session": session, "expires_at": expires_at}
        try:
            await self._redis.set(_slot(value), orjson.dumps(grant), ex=ttl_s)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("Client secrets cannot be minted right now; try again shortly.") from exc
        return value, expires_at

    async def redeem(self, value: str) -> Grant | None:
        """The grant of a live secret; None for one unknown or expired (it is not consumed: a
        client may reconnect with it until it expires, as with OpenAI's)."""
        try:
            raw = await self._redis.get(_slot(value))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("Client secrets cannot be checked right now; try again shortly.") from exc
        if raw is None:
            return None
        grant = orjson.loads(raw)
        if grant["expires_at"] <= time.time():
            return None
        return Grant(grant["key_id"], grant["session"], grant["expires_at"])


@dataclass(frozen=True)
class RealtimeCaller:
    principal: Principal
    grant: Grant | None  # the ephemeral secret it came with; None: an API key


class RealtimeGate:
    """Who opens a realtime session: an API key, or an ephemeral secret acting as its key (which
    must still be live: 401 once it is revoked or expired, as for a batch's lines)."""

    def __init__(
        self,
        authenticate: Callable[[Mapping[str, str], str | None], Awaitable[Principal]],
        act_as: Callable[[str | None], Awaitable[Principal]],
        keys: EphemeralKeys,
    ) -> None:
        self._authenticate = authenticate
        self._act_as = act_as
        self.keys = keys

    async def identify(self, headers: Mapping[str, str], address: str | None) -> RealtimeCaller:
        key = presented_key(headers)
        if key is None or not key.startswith(PREFIX):
            return RealtimeCaller(await self._authenticate(headers, address), None)
        grant = await self.keys.redeem(key)
        if grant is None:
            raise AuthenticationFailed(f"The client secret {redact(key)} is unknown or has expired.")
        return RealtimeCaller(await self._act_as(grant.key_id), grant)


def _slot(value: str) -> str:
    return "tantra:ek:" + hashlib.sha256(value.encode()).hexdigest()
