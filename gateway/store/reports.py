"""The ledger's totals for /admin/usage: one grouped query, and its rows as the report's JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, case, func, select

from gateway.store.models import UsageRecord

# `model` is the model asked for; `served_model` the one that answered (a fallback's), which the
# cost is priced by.
GroupBy = Literal["tenant", "key", "model", "served_model", "day"]
GROUPS: tuple[GroupBy, ...] = ("tenant", "key", "model", "served_model", "day")


def report_query(
    group_by: Sequence[GroupBy],
    start: datetime | None,
    end: datetime | None,
    filters: dict[str, str | None],
) -> Select[Any]:
    """Totals grouped by `group_by`, between `start` and `end`, where each column named in
    `filters` (tenant_id, key_id, model, served_model) equals its value (None: any)."""
    columns: dict[str, Any] = {
        "tenant": UsageRecord.tenant_id,
        "key": UsageRecord.key_id,
        "model": UsageRecord.model,
        "served_model": UsageRecord.served_model,
        "day": func.date(UsageRecord.created_at),
    }
    keys = [columns[g].label(f"{g}_id" if g in ("tenant", "key") else g) for g in group_by]
    query: Select[Any] = select(
        *keys,
        func.count().label("requests"),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(UsageRecord.cost_micros), 0).label("cost_micros"),
        func.coalesce(func.sum(UsageRecord.audio_seconds), 0).label("audio_seconds"),
        func.count(UsageRecord.media).label("media_requests"),
        func.coalesce(func.avg(UsageRecord.latency_ms), 0).label("avg_latency_ms"),
        func.sum(case((UsageRecord.status >= 400, 1), else_=0)).label("errors"),
    )
    if start is not None:
        query = query.where(UsageRecord.created_at >= start)
    if end is not None:
        query = query.where(UsageRecord.created_at < end)
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(UsageRecord, name) == value)
    if group_by:
        grouped = [columns[g] for g in group_by]
        query = query.group_by(*grouped).order_by(*grouped)
    return query


def report_row(row: dict[str, Any]) -> dict[str, Any]:
    """One result row as the report shows it: plain numbers, the cost in USD, the day as a date."""
    if "day" in row and row["day"] is not None:
        row["day"] = str(row["day"])[:10]
    row["prompt_tokens"] = int(row["prompt_tokens"])
    row["completion_tokens"] = int(row["completion_tokens"])
    row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    row["cost_usd"] = int(row.pop("cost_micros")) / 1_000_000
    row["audio_seconds"] = round(float(row["audio_seconds"]), 3)
    row["media_requests"] = int(row["media_requests"])
    row["avg_latency_ms"] = round(float(row["avg_latency_ms"]), 1)
    row["errors"] = int(row["errors"] or 0)
    return row
