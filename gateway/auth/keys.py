"""API key secrets: made once, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import string

PREFIX = "sk-tantra-"
_ALPHABET = string.ascii_letters + string.digits
_SECRET_CHARS = 40  # about 238 bits: a hash of it cannot be guessed back, so no slow hash is needed


def generate_key() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_CHARS))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def redact(key: str) -> str:
    """`sk-tantra-AbCd...wxyz`: enough to recognise a key, too little to use it."""
    if len(key) <= 12:
        return key[:3] + "***"
    head = key[: len(PREFIX) + 4] if key.startswith(PREFIX) else key[:6]
    return f"{head}...{key[-4:]}"
