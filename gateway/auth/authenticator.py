"""Turning a request's API key into a Principal, from memory when possible."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from gateway.auth.cache import KeyCache
from gateway.auth.keys import hash_key, redact
from gateway.auth.principal import ANONYMOUS, Principal
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.store import KeyRecord, Store, utcnow

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key or x-api-key header."
)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer`, else `api-key` (Azure's), else `x-api-key`."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed(
                "The Authorization header must be `Bearer YOUR_KEY`; other schemes are not supported."
            )
        return token.strip()
    for name in ("api-key", "x-api-key"):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()
    return None


class Authenticator:
    def __init__(self, store: Store, cache: KeyCache, *, enabled: bool = True) -> None:
        self._store = store
        self._cache = cache
        self.enabled = enabled

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, or AuthenticationFailed (401) with OpenAI's `invalid_api_key` envelope."""
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(_NO_KEY)
        key_hash = hash_key(key)
        found, record = self._cache.get(key_hash)
        if not found:
            generation = self._cache.generation
            record = await self._store.find_key(key_hash)
            self._cache.put(key_hash, record, generation)
        if record is None:
            raise AuthenticationFailed(f"Incorrect API key provided: {redact(key)}.")
        _check_usable(record, key)
        return Principal(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            key_limits=record.key_limits,
            tenant_limits=record.tenant_limits,
        )


def _check_usable(record: KeyRecord, key: str) -> None:
    now = utcnow()
    if record.revoked_at is not None:
        raise AuthenticationFailed(f"The API key {redact(key)} has been revoked.")
    if record.superseded_until is not None and record.superseded_until <= now:
        raise AuthenticationFailed(f"The API key {redact(key)} has been rotated; use its new secret.")
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthenticationFailed(f"The API key {redact(key)} has expired.")
    if record.tenant_disabled:
        error = AuthenticationFailed(f"The API key {redact(key)} belongs to a deactivated tenant.")
        error.code = "account_deactivated"
        raise error


class AdminGuard:
    """The admin API's lock: one key from settings, compared in constant time."""

    def __init__(self, admin_key: str | None) -> None:
        self._key = admin_key.encode() if admin_key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, headers: Mapping[str, str]) -> None:
        if self._key is None:
            raise PermissionDenied(
                "The admin API is disabled: set TANTRA_ADMIN_KEY or TANTRA_ADMIN_KEY_FILE.",
                code="admin_disabled",
            )
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(_NO_KEY)
        if not hmac.compare_digest(key.encode(), self._key):
            raise AuthenticationFailed(f"Incorrect admin key provided: {redact(key)}.")
