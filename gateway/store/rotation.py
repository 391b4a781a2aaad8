"""A key rotation's write: a compare-and-swap on the key's current hash.

Only one previous secret is kept, so a rotation with a grace period while an earlier one's grace
still runs would end the original secret at once: it is refused. The repository locks the row
(PostgreSQL) and writes with `swap`, whose WHERE holds the hash it read (any database, SQLite
included), so of two rotations at once the second matches no row and is refused rather than
silently replacing the first and its secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from gateway.store.models import ApiKey


def grace_conflict(key: ApiKey, grace: timedelta, now: datetime) -> str | None:
    """Why rotating `key` with `grace` now would end a secret that was promised more time, or None."""
    running = key.previous_valid_until
    if grace <= timedelta(0) or running is None or running <= now:
        return None
    return (
        f"The API key {key.id!r} is in the grace period of an earlier rotation until "
        f"{running.isoformat()}Z; rotating it again with a grace period would end its previous "
        "secret at once. Wait until then, or rotate with grace_seconds 0 to end every older secret now."
    )


def swap(key: ApiKey, *, key_hash: str, redacted: str, grace: timedelta, now: datetime) -> Any:
    """The UPDATE ... RETURNING that rotates `key` only if its hash is still the one read."""
    kept = grace > timedelta(0)
    return (
        update(ApiKey)
        .where(ApiKey.id == key.id, ApiKey.key_hash == key.key_hash, ApiKey.revoked_at.is_(None))
        .values(
            previous_hash=key.key_hash if kept else None,
            previous_valid_until=now + grace if kept else None,
            key_hash=key_hash,
            redacted=redacted,
            rotated_at=now,
            updated_at=now,
        )
        .returning(ApiKey)
        .execution_options(populate_existing=True)
    )
