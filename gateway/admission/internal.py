"""Requests the gateway makes to itself on a key's behalf (a batch's lines), marked in the ASGI
scope, which only the gateway sets (never a header a client could send).

Such a request is admitted as the key named here (looked up by id: the batch keeps no secret), its
ledger row keyed by `request_id` (fixed by the work, so a line sent again after a crash keeps one
row: the ledger skips a request id it holds), and its cost multiplied by `price_factor`.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTING_AS = "tantra.acting_as"


@dataclass(frozen=True)
class InternalCall:
    key_id: str | None
    request_id: str
    price_factor: float = 1.0
