"""The ledger bucketed in time for the tenants' usage and costs API: one grouped query per page,
the bucket of a row computed in SQL (seconds since the range's start, divided by the width)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, Select, cast, func, or_, select

from gateway.store.database import Database
from gateway.store.models import UsageRecord

_EPOCH = datetime(1970, 1, 1)
# What each group-by name of OpenAI's is in the ledger: the tenant is the project; the model is the
# one that answered (a fallback's), else the one asked for; a batch's lines have request ids
# `batch_..-<line>`.
_MODEL = func.coalesce(UsageRecord.served_model, UsageRecord.model)
GROUP_COLUMNS: dict[str, Any] = {
    "project_id": UsageRecord.tenant_id,
    "api_key_id": UsageRecord.key_id,
    "model": _MODEL,
    "line_item": _MODEL,
    "batch": UsageRecord.request_id.like("batch\\_%", escape="\\"),
}


@dataclass(frozen=True)
class BucketQuery:
    endpoints: Sequence[str] | None  # None: every endpoint (costs)
    start: int  # Unix seconds
    end: int
    width_s: int
    group_by: Sequence[str] = ()
    tenant_id: str | None = None  # None: every tenant (the admin key, or auth off)
    filters: dict[str, Sequence[str]] = field(default_factory=dict)  # project_id, api_key_id, model
    batch: bool | None = None


class UsageBuckets:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def rows(self, query: BucketQuery) -> list[dict[str, Any]]:
        """One dict per (bucket, group): `bucket` (its index), the group's values, and the totals."""
        async with self._db.engine.connect() as conn:
            result = await conn.execute(self._select(query))
            return [dict(row) for row in result.mappings().all()]

    def _select(self, query: BucketQuery) -> Select[Any]:
        seconds = (
            cast(func.strftime("%s", UsageRecord.created_at), Integer)
            if self._db.is_sqlite
            else func.extract("epoch", UsageRecord.created_at)
        )
        bucket = cast(func.floor((seconds - query.start) / float(query.width_s)), BigInteger).label("bucket")
        groups = [GROUP_COLUMNS[name].label(name) for name in query.group_by]
        served = or_(UsageRecord.status < 400, UsageRecord.outcome == "client_closed")
        statement: Select[Any] = select(
            bucket,
            *groups,
            func.count().label("requests"),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(UsageRecord.cost_micros), 0).label("cost_micros"),
            func.coalesce(func.sum(UsageRecord.audio_seconds), 0).label("audio_seconds"),
        ).where(
            UsageRecord.created_at >= _EPOCH + timedelta(seconds=query.start),
            UsageRecord.created_at < _EPOCH + timedelta(seconds=query.end),
            served,
        )
        if query.endpoints is not None:
            statement = statement.where(UsageRecord.endpoint.in_(list(query.endpoints)))
        if query.tenant_id is not None:
            statement = statement.where(UsageRecord.tenant_id == query.tenant_id)
        for name, values in query.filters.items():
            statement = statement.where(GROUP_COLUMNS[name].in_(list(values)))
        if query.batch is not None:
            batch = GROUP_COLUMNS["batch"]
            statement = statement.where(batch if query.batch else ~batch)
        return statement.group_by(bucket, *[GROUP_COLUMNS[name] for name in query.group_by]).order_by(bucket)
