"""The Batch API: POST /v1/batches, GET /v1/batches (list), GET /v1/batches/{id} and
POST /v1/batches/{id}/cancel (docs/batches.md).

Each endpoint is admitted like the Files API's (authenticated, one request against the key's and
tenant's limits, no tokens, a ledger row). A batch belongs to its tenant: another tenant's id is
OpenAI's 404. Creating one writes the batch (`validating`) and its durable job in one transaction;
the work itself is `BatchWork` (gateway/services/batch_work.py), run by any replica's job runner.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Ticket
from gateway.admission.body import validate
from gateway.errors import InvalidRequest, NotFound
from gateway.jobs import JobOptions, JobRunner
from gateway.protocol.batches import (
    WINDOW_S,
    BatchErrors,
    BatchList,
    BatchObject,
    CreateBatchRequest,
    RequestCounts,
)
from gateway.protocol.stored import ListParams, check_metadata
from gateway.services.stored import ANONYMOUS_TENANT, StoredObjects, answer, no_such, unix
from gateway.store import utcnow
from gateway.store.batches import CANCELLED, CANCELLING, FINAL, VALIDATING, Batch, BatchStore, enter
from gateway.store.owned import Owner, PageQuery

KIND = "batch"


class BatchesService:
    def __init__(self, objects: StoredObjects, store: BatchStore, runner: JobRunner) -> None:
        self._objects = objects
        self._store = store
        self._runner = runner

    async def create(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/batches") as ticket:
            _, _, parsed = await ticket.read_json(CreateBatchRequest)
            metadata = check_metadata(parsed.metadata)
            owner = _owner(ticket)
            now = utcnow()
            tenant = owner.tenant_id or ANONYMOUS_TENANT
            found = await self._objects.files.get_file(tenant, parsed.input_file_id, now)
            if found is None:
                raise NotFound(f"No such File object: {parsed.input_file_id}", param="input_file_id")
            if found.purpose != "batch":
                raise _invalid(
                    f"The input file {parsed.input_file_id} must have purpose 'batch', "
                    f"not '{found.purpose}'.",
                    "input_file_id",
                )
            batch = Batch(
                id=f"batch_{secrets.token_hex(12)}",
                tenant_id=owner.tenant_id,
                created_by=owner.key_id,
                end_user=self._objects.owner(ticket).user,
                created_at=now,
                tags=metadata,
                endpoint=parsed.endpoint,
                input_file_id=parsed.input_file_id,
                completion_window=parsed.completion_window,
                status=VALIDATING,
                total=0,
                completed=0,
                failed=0,
                expires_at=now + timedelta(seconds=WINDOW_S[parsed.completion_window]),
            )
            async with self._store.db.session() as session, session.begin():
                session.add(batch)
                await self._runner.submit(
                    KIND,
                    owner.tenant_id,
                    {"batch_id": batch.id},
                    created_by=owner.key_id,
                    user=batch.end_user,
                    options=JobOptions(job_id=batch.id),
                    session=session,
                )
            return answer(ticket, batch_object(batch))

    async def retrieve(self, request: Request, batch_id: str) -> Response:
        async with self._objects.enter(request, "/v1/batches/{batch_id}") as ticket:
            batch = await self._store.get(_owner(ticket), batch_id)
            if batch is None:
                raise no_such("Batch", batch_id)
            return answer(ticket, batch_object(batch))

    async def list(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/batches") as ticket:
            params = validate(ListParams, dict(request.query_params))
            # OpenAI lists batches newest first.
            page = await self._store.page(_owner(ticket), PageQuery(params.after, params.limit, "desc"))
            data = [BatchObject.model_validate(batch_object(row)) for row in page.rows]
            listing = BatchList(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=page.has_more,
            )
            return answer(ticket, listing.model_dump())

    async def cancel(self, request: Request, batch_id: str) -> Response:
        """`cancelling` at once; the batch's run sees it within a third of its lease, writes the
        answered lines' files and ends `cancelled`. A batch not yet started is cancelled at once."""
        async with self._objects.enter(request, "/v1/batches/{batch_id}/cancel") as ticket:
            owner = _owner(ticket)
            async with self._store.db.session() as session, session.begin():
                batch = await self._store.find(session, owner, batch_id)
                if batch is None:
                    raise no_such("Batch", batch_id)
                if batch.status in FINAL:
                    raise _invalid(f"Cannot cancel a batch with status '{batch.status}'.", None, 409)
                enter(batch, CANCELLING, utcnow())
            job = await self._runner.cancel(batch_id, tenant_id=owner.tenant_id)
            if job is not None and job.status == "cancelled":
                async with self._store.db.session() as session, session.begin():
                    batch = await self._store.find(session, owner, batch_id)
                    if batch is not None and batch.status == CANCELLING:
                        enter(batch, CANCELLED, utcnow())
            fresh = await self._store.get(owner, batch_id)
            assert fresh is not None
            return answer(ticket, batch_object(fresh))


def _owner(ticket: Ticket) -> Owner:
    principal = ticket.principal
    return Owner(principal.tenant_id, principal.key_id)


def _invalid(message: str, param: str | None, status: int = 400) -> InvalidRequest:
    """OpenAI's 400 (a bad input file), or its 409 for cancelling a finished batch."""
    if status == 409:
        return InvalidRequest(message, status=409, code="batch_not_cancellable")
    return InvalidRequest(message, param=param)


def batch_object(batch: Batch) -> dict[str, Any]:
    created = unix(batch.created_at)
    assert created is not None
    errors = BatchErrors.model_validate({"data": batch.errors}) if batch.errors else None
    return BatchObject(
        id=batch.id,
        endpoint=batch.endpoint,
        errors=errors,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=batch.status,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        created_at=created,
        in_progress_at=unix(batch.in_progress_at),
        expires_at=unix(batch.expires_at),
        finalizing_at=unix(batch.finalizing_at),
        completed_at=unix(batch.completed_at),
        failed_at=unix(batch.failed_at),
        expired_at=unix(batch.expired_at),
        cancelling_at=unix(batch.cancelling_at),
        cancelled_at=unix(batch.cancelled_at),
        request_counts=RequestCounts(total=batch.total, completed=batch.completed, failed=batch.failed),
        metadata=dict(batch.tags) if batch.tags else None,
    ).model_dump()
