"""The panel's views of stored objects (/admin/ui/stored/{kind}; docs/governance.md "Control
panel"): files, batches, stored responses (background ones included), fine-tuning jobs, moderation
flags and stored chat completions, each a list with filters (tenant, end user, status, days) and
pages, and a page per object with its metadata, status and sizes, linking the objects it names (a
batch's input and output files, a fine-tuning job's training file, a response's previous one).

Read through `gateway.store.browse.ObjectBrowser`. A tenant admin sees its own tenant's objects
only: another tenant's object id is the 404 of a missing one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.auth.identities import Identity
from gateway.errors import InvalidRequest, NotFound
from gateway.routes.panel import Panel, render
from gateway.store.browse import KINDS, Filters, Kind, ObjectBrowser

Short = Annotated[str, Query(max_length=256)]


def add_object_pages(router: APIRouter, panel: Panel, browser: ObjectBrowser) -> None:
    @router.get("/stored")
    async def stored_index(request: Request) -> Response:
        _, csrf = await panel.who(request)
        return render(request, "objects_index.html", csrf=csrf, kinds=list(KINDS.values()))

    @router.get("/stored/{kind_name}")
    async def stored_list(
        request: Request,
        kind_name: str,
        tenant_id: Short = "",
        user: Short = "",
        status: Short = "",
        since: Short = "",
        until: Short = "",
        before: Short = "",
    ) -> Response:
        identity, csrf = await panel.who(request)
        kind = _kind(kind_name)
        filters = Filters(
            tenant_id=_scope(identity, tenant_id.strip()),
            end_user=user.strip() or None,
            status=status if status in kind.statuses else None,
            since=_day(since, "since"),
            until=_day(until, "until", next_day=True),
            before=before or None,
        )
        listing = await browser.page(kind, filters)
        shown = {"tenant_id": tenant_id, "user": user, "status": filters.status or ""}
        return render(
            request,
            "objects.html",
            csrf=csrf,
            kind=kind,
            rows=[_shown(row) for row in listing.rows],
            filters=shown | {"since": since, "until": until},
            next_before=listing.next_before,
        )

    @router.get("/stored/{kind_name}/{object_id}")
    async def stored_detail(request: Request, kind_name: str, object_id: str) -> Response:
        identity, csrf = await panel.who(request)
        kind = _kind(kind_name)
        tenant = None if identity.all_tenants else (identity.tenant_id or "-")
        found = await browser.get(kind, object_id[:200], tenant)
        if found is None:
            raise NotFound(f"No {kind.title.lower()} object {object_id!r}.")
        return render(request, "object.html", csrf=csrf, kind=kind, values=_shown(found))


def _kind(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise NotFound(f"No kind of stored object {name!r}.")
    return kind


def _scope(identity: Identity, asked: str) -> str | None:
    """The tenant a list reads: a tenant admin's own whatever the URL says; else the one asked."""
    if not identity.all_tenants:
        return identity.tenant_id or "-"
    return asked or None


def _day(text: str, param: str, *, next_day: bool = False) -> datetime | None:
    if not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"{param}: give a day as YYYY-MM-DD.", param=param) from None
    start = datetime(day.year, day.month, day.day)  # the store's times are naive UTC
    return start + timedelta(days=1) if next_day else start


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, int) and not isinstance(value, bool) and value > 1_000_000_000:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")  # epoch seconds
        return value

    return {name: one(value) for name, value in values.items()}
