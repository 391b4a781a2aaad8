"""Who is calling: API keys of tenants, looked up from a cache that every replica keeps current."""

from gateway.auth.admin import KeyAdmin
from gateway.auth.authenticator import AdminGuard, Authenticator, presented_key
from gateway.auth.cache import KeyCache
from gateway.auth.invalidation import InvalidationBus
from gateway.auth.keys import PREFIX, generate_key, hash_key, redact
from gateway.auth.principal import ANONYMOUS, Principal

__all__ = [
    "ANONYMOUS",
    "PREFIX",
    "AdminGuard",
    "Authenticator",
    "InvalidationBus",
    "KeyAdmin",
    "KeyCache",
    "Principal",
    "generate_key",
    "hash_key",
    "presented_key",
    "redact",
]
