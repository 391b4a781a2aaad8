"""The panel's usage page (/admin/ui/usage): the ledger's totals over the last days by day, tenant,
model or key, as a table and a bar chart drawn on the server (SVG: no JavaScript, nothing fetched),
and the same rows as CSV (/admin/ui/usage.csv). A tenant admin sees their own tenant's rows only.
A request reaches the ledger within the ledger's flush interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.auth.identities import Identity
from gateway.routes.admin import USAGE_TOTALS
from gateway.routes.csv_export import csv_response
from gateway.routes.panel import Panel, render
from gateway.store import Store

By = Literal["day", "tenant", "model", "key"]
Metric = Literal["cost_usd", "total_tokens", "requests"]
METRICS: dict[str, str] = {"cost_usd": "Cost (USD)", "total_tokens": "Tokens", "requests": "Requests"}
BARS = 31
"""Bars drawn at most: a month of days, or the largest tenants, models or keys (the table has all)."""
Days = Annotated[int, Query(ge=1, le=366)]


def add_usage_page(router: APIRouter, panel: Panel, store: Store) -> None:
    @router.get("/usage")
    async def usage_page(
        request: Request, by: By = "day", days: Days = 30, metric: Metric = "cost_usd"
    ) -> Response:
        identity, csrf = await panel.who(request)
        rows = await _report(store, identity, by, days)
        return render(
            request,
            "usage.html",
            csrf=csrf,
            rows=rows,
            by=by,
            days=days,
            metric=metric,
            metrics=METRICS,
            bars=_bars(rows, by, metric),
            total=sum(float(row[metric]) for row in rows),
        )

    @router.get("/usage.csv")
    async def usage_csv(request: Request, by: By = "day", days: Days = 30) -> Response:
        identity, _ = await panel.who(request)
        rows = await _report(store, identity, by, days)
        return csv_response(rows, ["label", *USAGE_TOTALS], filename=f"usage-by-{by}-{days}d.csv")


async def _report(store: Store, identity: Identity, by: By, days: int) -> list[dict[str, Any]]:
    """The rows the identity may see, each with a `label` (a tenant's name rather than its id)."""
    scope = None if identity.all_tenants else (identity.tenant_id or "-")
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)  # naive UTC, as the ledger writes its times
    rows = await store.usage_report(group_by=[by], start=start, tenant_id=scope)
    names = {t.id: t.name for t in await store.list_tenants()} if by == "tenant" else {}
    column = {"tenant": "tenant_id", "key": "key_id"}.get(by, by)
    for row in rows:
        value = row.get(column)
        row["label"] = names.get(value, value) if value is not None else "(none)"
    if by == "day":
        return sorted(rows, key=lambda row: row["label"])
    return sorted(rows, key=lambda row: -float(row["cost_usd"]))


def _bars(rows: list[dict[str, Any]], by: By, metric: Metric) -> list[dict[str, Any]]:
    """Each drawn bar's label, value and width as a share of the largest (0 to 100)."""
    shown = rows[-BARS:] if by == "day" else sorted(rows, key=lambda row: -float(row[metric]))[:BARS]
    top = max((float(row[metric]) for row in shown), default=0.0) or 1.0
    return [
        {"label": row["label"], "value": row[metric], "width": round(100 * float(row[metric]) / top, 1)}
        for row in shown
    ]
