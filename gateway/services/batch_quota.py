"""The batch token quota (OpenAI's "enqueued tokens" limit; docs/batches.md): the input tokens of a
key's (and its tenant's) batches that have not ended yet may not exceed the key's `batch_tokens`
(TANTRA_BATCH_TOKEN_QUOTA for keys without one) nor the tenant's.

A batch's input tokens are estimated once its file is validated and kept on the batch
(`enqueued_tokens`); they count while the batch is validating, in progress, finalizing or
cancelling, and are released when it ends (the sum only covers batches not in a final status), so a
crash or a restart can neither leak nor double count them. A batch that would go over fails at
validation with OpenAI's `token_limit_exceeded` error, as OpenAI's batch does. The sum is read in
the transaction that starts the batch, the key's and tenant's rows locked first on PostgreSQL
(`FOR UPDATE`), so two batches of one key validated at once on two replicas cannot both squeeze in;
SQLite runs one writer at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.batches import FINAL, Batch
from gateway.store.models import ApiKey, Tenant

# The gateway's own estimate (gateway/limits/estimate.py): four characters a token and a few tokens
# a message, on the fields a line's endpoint reads its input from. Lines of every endpoint are
# counted alike without a tokenizer: a quota is a coarse ceiling, as OpenAI's is.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4
_INPUT_FIELDS = ("messages", "prompt", "input", "instructions")


def input_tokens(bodies: Iterable[dict[str, Any]]) -> int:
    """The estimated input tokens of a batch's request bodies."""
    total = 0
    for body in bodies:
        for name in _INPUT_FIELDS:
            value = body.get(name)
            if value is None:
                continue
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            total += math.ceil(len(text) / _CHARS_PER_TOKEN)
            if name == "messages" and isinstance(value, list):
                total += _PER_MESSAGE * len(value)
    return total


class BatchQuota:
    def __init__(self, default_key_quota: int = 0) -> None:
        # 0: keys without a `batch_tokens` of their own have no quota.
        self._default = default_key_quota

    async def refusal(self, session: AsyncSession, batch: Batch, tokens: int) -> dict[str, Any] | None:
        """OpenAI's `token_limit_exceeded` error (an errors.data item) when `tokens` more would take
        the batch's key or tenant over its quota; None when it fits."""
        key_quota: int | None = None
        if batch.created_by is not None:
            query = select(ApiKey.batch_tokens).where(ApiKey.id == batch.created_by).with_for_update()
            key_quota = (await session.execute(query)).scalar_one_or_none()
        if key_quota is None and self._default > 0:
            key_quota = self._default
        tenant_quota: int | None = None
        if batch.tenant_id is not None:
            query = select(Tenant.batch_tokens).where(Tenant.id == batch.tenant_id).with_for_update()
            tenant_quota = (await session.execute(query)).scalar_one_or_none()
        for scope, quota, mine in (
            ("API key", key_quota, Batch.created_by == batch.created_by),
            ("organization", tenant_quota, Batch.tenant_id == batch.tenant_id),
        ):
            if quota is None:
                continue
            enqueued = await _enqueued(session, batch.id, mine)
            if tokens + enqueued > quota:
                return _exceeded(scope, quota, tokens, enqueued)
        return None


async def _enqueued(session: AsyncSession, batch_id: str, mine: ColumnElement[bool]) -> int:
    query = select(func.coalesce(func.sum(Batch.enqueued_tokens), 0)).where(
        mine, Batch.status.not_in(FINAL), Batch.id != batch_id
    )
    return int((await session.execute(query)).scalar_one())


def _exceeded(scope: str, quota: int, tokens: int, enqueued: int) -> dict[str, Any]:
    message = (
        f"Enqueued token limit reached for this {scope}. Limit: {quota:,} enqueued tokens "
        f"(this batch: {tokens:,}; already enqueued: {enqueued:,}). Please try again once some "
        "in_progress batches have been completed."
    )
    return {"code": "token_limit_exceeded", "message": message, "param": None, "line": None}
