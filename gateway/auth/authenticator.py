"""Turning a request's API key into a Principal, from memory when possible."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from gateway.auth.cache import KeyCache
from gateway.auth.failures import AuthFailures
from gateway.auth.keys import hash_key, redact
from gateway.auth.principal import ANONYMOUS, Principal
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.settings.policy import Allowance
from gateway.store import KeyRecord, Store, utcnow

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key or x-api-key header."
)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer` (or `Token`, as mem0's client sends it), else `api-key`
    (Azure's), else `x-api-key`."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token.strip():
            raise AuthenticationFailed(
                "The Authorization header must be `Bearer YOUR_KEY`; other schemes are not supported."
            )
        return token.strip()
    for name in ("api-key", "x-api-key"):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()
    return None


_NO_THROTTLE = Allowance(0)


class Authenticator:
    def __init__(
        self, store: Store, cache: KeyCache, *, enabled: bool = True, failures: AuthFailures | None = None
    ) -> None:
        self._store = store
        self._cache = cache
        self.enabled = enabled
        self.failures = failures

    async def authenticate(
        self, headers: Mapping[str, str], *, address: str | None = None, allowance: Allowance = _NO_THROTTLE
    ) -> Principal:
        """The caller, or AuthenticationFailed (401) with OpenAI's `invalid_api_key` envelope.

        An unknown key counts against the client `address`; past its `allowance`, a key that is
        not in the cache gets 429 instead of a database lookup."""
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise AuthenticationFailed(_NO_KEY)
        key_hash = hash_key(key)
        found, record = self._cache.get(key_hash)
        failures = self.failures
        if not found:
            record = await self._look_up(key_hash, address, allowance)
        if record is None:
            if failures is not None:
                await failures.failed(address, allowance)
            raise AuthenticationFailed(f"Incorrect API key provided: {redact(key)}.")
        _check_usable(record, key)
        return Principal(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            key_limits=record.key_limits,
            tenant_limits=record.tenant_limits,
        )

    async def principal_of(self, key_id: str | None) -> Principal:
        """The key with id `key_id`, for work the gateway does on its behalf (a batch's lines):
        401 once it is revoked, expired, gone or its tenant disabled. No key with auth off."""
        if not self.enabled or key_id is None:
            return ANONYMOUS
        record = await self._store.find_key_by_id(key_id)
        if record is None:
            raise AuthenticationFailed(f"The API key {key_id} no longer exists.")
        _check_usable(record, key_id)
        return Principal(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            key_limits=record.key_limits,
            tenant_limits=record.tenant_limits,
        )

    async def _look_up(self, key_hash: str, address: str | None, allowance: Allowance) -> KeyRecord | None:
        """The store's record of a key not in the cache; from an address that presented too many
        unknown keys, a stale cache entry or 429 instead (no query)."""
        failures = self.failures
        if failures is not None and address is not None and failures.blocked(address, allowance):
            record = self._cache.stale(key_hash)
            if record is None:
                failures.refuse(address)
            return record
        generation = self._cache.generation
        record = await self._store.find_key(key_hash)
        self._cache.put(key_hash, record, generation)
        return record


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
