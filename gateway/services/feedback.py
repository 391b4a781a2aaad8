"""Feedback (Tantra's extension, docs/fine-tuning.md "Feedback"): `POST /v1/feedback` attaches a
rating, a label, a comment or a corrected answer to a stored chat completion, a stored response or
an item of a conversation; `GET /v1/feedback` lists it (filters, OpenAI's cursor page),
`GET/DELETE /v1/feedback/{id}`; `POST /v1/feedback/export` turns it into a fine-tuning file; the
admin API lists it across tenants.

Each endpoint is admitted like the Conversations API's (authenticated, one request against the
key's and tenant's limits, no tokens, a ledger row, traced). Feedback belongs to its tenant: any key
of the tenant may read it, another tenant's key gets the 404 of an id that does not exist, and the
object it rates must be the tenant's too (another tenant's completion is the same 404).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admission import Admission, Ticket, validate
from gateway.errors import InvalidRequest, NotFound
from gateway.limits import Estimate
from gateway.protocol.feedback import (
    Feedback,
    FeedbackCreate,
    FeedbackExport,
    FeedbackExported,
    FeedbackListParams,
    score,
)
from gateway.protocol.fine_tuning_file import MIN_EXAMPLES
from gateway.services.feedback_export import FileWriter, training_lines
from gateway.services.feedback_sources import FeedbackSources
from gateway.services.pii import Redactor
from gateway.services.stored import ANONYMOUS_TENANT, file_object, unix
from gateway.store import utcnow
from gateway.store.feedback import FeedbackFilter, FeedbackStore, StoredFeedback
from gateway.store.files import Owner as FileOwner
from gateway.store.owned import Owner, PageQuery

ONE = "/v1/feedback/{feedback_id}"
PREFIX = "feedback_"
# The most feedback rows one export reads (the newest past it are left for the next export).
EXPORT_MAX_ROWS = 50_000


class FeedbackService:
    def __init__(
        self,
        admission: Admission,
        store: FeedbackStore,
        sources: FeedbackSources,
        files: FileWriter | None = None,
    ) -> None:
        self._admission = admission
        self._store = store
        self._sources = sources
        # The Files API's writer (None without it: the export is then a 400).
        self._files = files
        # PII redaction of what is stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None

    async def create(self, request: Request) -> Response:
        async with self._admission.enter(request, "POST /v1/feedback") as ticket:
            owner = await _admit(ticket)
            _, _, asked = await ticket.read_json(FeedbackCreate)
            exchange = await self._sources.exchange(owner, asked)
            texts: dict[str, Any] = {"comment": asked.comment, "correction": asked.correction}
            texts |= {"prompt": exchange.prompt, "answer": exchange.answer}
            if self.redactor is not None:
                texts = await self.redactor.stored(owner.tenant_id, texts)
            row = StoredFeedback(
                id=PREFIX + secrets.token_hex(12),
                tenant_id=owner.tenant_id,
                created_by=owner.key_id,
                end_user=asked.user,
                created_at=utcnow(),
                tags=asked.metadata,
                target_type=exchange.target_type,
                target_id=exchange.target_id,
                conversation_id=exchange.conversation_id,
                model=exchange.model,
                rating=None if asked.rating is None else str(asked.rating),
                score=score(asked.rating),
                label=asked.label,
                comment=texts["comment"],
                correction=texts["correction"],
                prompt=texts["prompt"],
                answer=texts["answer"],
                prompt_hash=exchange.prompt_hash,
            )
            await self._store.add(row)
            return _answer(ticket, feedback_object(row))

    async def retrieve(self, request: Request, feedback_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ONE) as ticket:
            owner = await _admit(ticket)
            row = await self._store.get(owner, feedback_id)
            if row is None:
                raise _not_found(feedback_id)
            return _answer(ticket, feedback_object(row))

    async def delete(self, request: Request, feedback_id: str) -> Response:
        async with self._admission.enter(request, "DELETE " + ONE) as ticket:
            owner = await _admit(ticket)
            if not await self._store.delete(owner, feedback_id):
                raise _not_found(feedback_id)
            return _answer(ticket, {"id": feedback_id, "object": "feedback.deleted", "deleted": True})

    async def list(self, request: Request) -> Response:
        async with self._admission.enter(request, "GET /v1/feedback") as ticket:
            owner = await _admit(ticket)
            params = validate(FeedbackListParams, dict(request.query_params))
            query = PageQuery(params.after, params.limit, params.order)
            rows, more = await self._store.page(owner, query, _filter(params))
            return _answer(ticket, page_object(rows, more))

    async def admin_list(self, params: FeedbackListParams, tenant_id: str | None) -> dict[str, Any]:
        """Every tenant's feedback (or one tenant's), for the admin API (its guard is the route's)."""
        query = PageQuery(params.after, params.limit, params.order)
        rows, more = await self._store.page(None, query, _filter(params, tenant_id))
        listing = page_object(rows, more)
        tenants = {row.id: row.tenant_id for row in rows}
        for item in listing["data"]:
            item["tenant_id"] = tenants[item["id"]]
        return listing

    async def export(self, request: Request) -> Response:
        async with self._admission.enter(request, "POST /v1/feedback/export") as ticket:
            owner = await _admit(ticket)
            _, _, asked = await ticket.read_json(FeedbackExport)
            if self._files is None:
                raise InvalidRequest("Exporting feedback needs the Files API, which is not enabled.")
            since = None if asked.created_after is None else _naive(asked.created_after)
            where = FeedbackFilter(label=asked.label, created_after=since)
            rows = await self._store.for_export(owner, where, EXPORT_MAX_ROWS)
            made = training_lines(rows, asked.method, include_rated=asked.include_rated)
            if len(made.lines) < MIN_EXAMPLES:
                raise InvalidRequest(
                    f"The feedback makes {len(made.lines)} {asked.method} example(s); a fine-tuning file "
                    f"needs at least {MIN_EXAMPLES}.",
                    param="method",
                    code="not_enough_examples",
                )
            tenant = owner.tenant_id or ANONYMOUS_TENANT
            filename = asked.filename or f"feedback-{asked.method}-{utcnow():%Y%m%dT%H%M%S}.jsonl"
            stored = await self._files.write(
                FileOwner(tenant, owner.key_id), filename, b"".join(made.lines), "fine-tune"
            )
            exported = FeedbackExported(
                method=asked.method,
                examples=len(made.lines),
                feedback_used=made.used,
                file=file_object(stored),
            )
            return _answer(ticket, exported.model_dump())


def feedback_object(row: StoredFeedback) -> dict[str, Any]:
    rating: str | int | None = row.rating
    if row.rating is not None and row.rating.isdigit():
        rating = int(row.rating)
    return Feedback(
        id=row.id,
        created_at=unix(row.created_at) or 0,
        target_type=row.target_type,
        target_id=row.target_id,
        conversation_id=row.conversation_id,
        model=row.model,
        rating=rating,
        label=row.label,
        comment=row.comment,
        correction=row.correction,
        user=row.end_user,
        metadata=dict(row.tags or {}),
    ).model_dump()


def page_object(rows: list[StoredFeedback], more: bool) -> dict[str, Any]:
    data = [feedback_object(row) for row in rows]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more}


def _filter(params: FeedbackListParams, tenant_id: str | None = None) -> FeedbackFilter:
    return FeedbackFilter(
        tenant_id=tenant_id,
        target_id=params.target_id,
        target_type=params.target_type,
        conversation_id=params.conversation_id,
        rating=params.rating,
        label=params.label,
        end_user=params.user,
    )


async def _admit(ticket: Ticket) -> Owner:
    await ticket.reserve(Estimate(0, 0, 0))
    principal = ticket.principal
    return Owner(principal.tenant_id, principal.key_id)


def _answer(ticket: Ticket, body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=ticket.limit_headers)


def _naive(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _not_found(feedback_id: str) -> NotFound:
    return NotFound(f"No feedback found with id '{feedback_id}'.", param="feedback_id", code="not_found")
