"""The panel's feedback page (/admin/ui/feedback, docs/fine-tuning.md "Feedback"): the newest
feedback, filtered by tenant, rating and label; a tenant admin sees its own tenant's only."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol.feedback import FeedbackListParams
from gateway.routes.panel import Panel, render
from gateway.services.feedback import FeedbackService

_RATINGS = ("up", "down", "1", "2", "3", "4", "5")


def add_feedback_page(router: APIRouter, panel: Panel, feedback: FeedbackService | None) -> None:
    @router.get("/feedback")
    async def feedback_page(
        request: Request, tenant_id: str = "", rating: str = "", label: str = ""
    ) -> Response:
        identity, csrf = await panel.who(request)
        filters = {"tenant_id": tenant_id.strip()[:40], "rating": rating, "label": label.strip()[:64]}
        if feedback is None:
            return render(request, "feedback.html", csrf=csrf, enabled=False, items=[], filters=filters)
        tenant = (filters["tenant_id"] or None) if identity.all_tenants else (identity.tenant_id or "-")
        params = FeedbackListParams(
            limit=100,
            rating=rating if rating in _RATINGS else None,
            label=filters["label"] or None,
        )
        listing = await feedback.admin_list(params, tenant)
        items = [
            {
                **item,
                "created_at": datetime.fromtimestamp(item["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for item in listing["data"]
        ]
        return render(request, "feedback.html", csrf=csrf, enabled=True, items=items, filters=filters)
