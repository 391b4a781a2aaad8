"""The fine-tuning jobs API: POST/GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id},
POST .../cancel, GET .../events and .../checkpoints, as OpenAI's (docs/fine-tuning.md).

Each endpoint is admitted like the Files API's (authenticated, one request against the key's and
tenant's limits, no tokens, a ledger row). A job belongs to its tenant: another tenant's id is
OpenAI's 404. Creating one checks the tenant's caps (`FineTuningCaps`: active jobs, stored models)
and writes the job (`validating_files`) and its durable job in one transaction; the run itself is
`FineTuningWork` (gateway/services/fine_tuning_work.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admission.body import validate
from gateway.errors import InvalidRequest, NotFound, no_such_model
from gateway.jobs import JobOptions, JobRunner
from gateway.protocol.fine_tuning import (
    FINAL,
    CreateFineTuningJob,
    FineTuningJob,
    FineTuningJobList,
    JobCheckpoint,
    JobCheckpointList,
    JobEvent,
    JobEventList,
    PageParams,
)
from gateway.protocol.stored import check_metadata
from gateway.services.adapters import AdapterServing
from gateway.services.fine_tuning_caps import FineTuningCaps
from gateway.services.stored import ANONYMOUS_TENANT, StoredObjects, answer, unix
from gateway.store import utcnow
from gateway.store.fine_tuning import FineTuningEventRow, FineTuningJobRow, FineTuningStore
from gateway.store.owned import Owner, PageQuery

KIND = "fine_tuning"
JOB_PREFIX = "ftjob-"


@dataclass(frozen=True)
class Defaults:
    """What `auto` means for each hyperparameter (TANTRA_FINE_TUNING_*)."""

    n_epochs: int = 3
    batch_size: int = 4
    learning_rate_multiplier: float = 1.0
    beta: float = 0.1


class FineTuningService:
    def __init__(
        self,
        objects: StoredObjects,
        store: FineTuningStore,
        runner: JobRunner,
        bases: Callable[[], set[str]],
        defaults: Defaults,
        adapters: AdapterServing | None = None,
        caps: FineTuningCaps | None = None,
    ) -> None:
        self._objects = objects
        self._store = store
        self._runner = runner
        # The base models a job may name (those with a checkpoint the trainer can read).
        self._bases = bases
        self._defaults = defaults
        self._adapters = adapters
        # The tenants' caps on active jobs and stored models, checked with the job's insert under one
        # lock per replica (and the tenant's row lock across replicas on PostgreSQL).
        self._caps = caps or FineTuningCaps()
        self._creating = asyncio.Lock()

    async def create(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/fine_tuning/jobs") as ticket:
            _, _, parsed = await ticket.read_json(CreateFineTuningJob)
            metadata = check_metadata(parsed.metadata)
            owner = self._objects.owner(ticket)
            if parsed.model not in self._bases():
                raise InvalidRequest(
                    f"Model {parsed.model} is not available for fine-tuning or does not exist.",
                    param="model",
                    code="model_not_available",
                )
            for param in ("training_file", "validation_file"):
                await self._check_file(owner.tenant_id, getattr(parsed, param), param)
            row = FineTuningJobRow(
                id=JOB_PREFIX + secrets.token_hex(12),
                tenant_id=ticket.principal.tenant_id,
                created_by=owner.created_by,
                end_user=owner.user,
                created_at=utcnow(),
                tags=metadata,
                model=parsed.model,
                training_file=parsed.training_file,
                validation_file=parsed.validation_file,
                suffix=parsed.suffix or None,
                seed=parsed.seed if parsed.seed is not None else secrets.randbelow(2**31),
                method=self._method(parsed),
                status="validating_files",
            )
            async with self._creating, self._store.db.session() as session, session.begin():
                await self._caps.check(session, ticket.principal, parsed.model)
                session.add(row)
                add_event(session, row.id, "Created fine-tuning job: " + row.id)
                await self._runner.submit(
                    KIND,
                    row.tenant_id,
                    {"job_id": row.id},
                    created_by=row.created_by,
                    user=row.end_user,
                    options=JobOptions(job_id=row.id),
                    session=session,
                )
            return answer(ticket, job_object(row))

    async def _check_file(self, tenant: str | None, file_id: str | None, param: str) -> None:
        if file_id is None:
            return
        found = await self._objects.files.get_file(tenant or ANONYMOUS_TENANT, file_id, utcnow())
        if found is None:
            raise InvalidRequest(f"invalid {param}: {file_id}", param=param, code="invalid_request_error")
        if found.purpose != "fine-tune":
            raise InvalidRequest(
                f"File {file_id} has purpose '{found.purpose}'; files for fine-tuning must have "
                "purpose 'fine-tune'.",
                param=param,
            )

    def _method(self, parsed: CreateFineTuningJob) -> dict[str, Any]:
        """The method with every `auto` (or missing) hyperparameter replaced by the value used."""
        kind = parsed.method.type if parsed.method is not None else "supervised"
        given: dict[str, Any] = {}
        if parsed.hyperparameters is not None:
            given.update(parsed.hyperparameters.model_dump(exclude_none=True))
        chosen = getattr(parsed.method, kind, None) if parsed.method is not None else None
        if chosen is not None and chosen.hyperparameters is not None:
            given.update(chosen.hyperparameters.model_dump(exclude_none=True))
        defaults = self._defaults
        values: dict[str, Any] = {
            "n_epochs": defaults.n_epochs,
            "batch_size": defaults.batch_size,
            "learning_rate_multiplier": defaults.learning_rate_multiplier,
        }
        if kind == "dpo":
            values["beta"] = defaults.beta
        for name, value in given.items():
            if value != "auto" and name in values:
                _check_positive(name, value, kind)
                values[name] = value
        return {"type": kind, kind: {"hyperparameters": values}}

    async def retrieve(self, request: Request, job_id: str) -> Response:
        async with self._objects.enter(request, "/v1/fine_tuning/jobs/{fine_tuning_job_id}") as ticket:
            return answer(ticket, job_object(await self._own(ticket.principal.tenant_id, job_id)))

    async def list(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/fine_tuning/jobs") as ticket:
            params = validate(PageParams, dict(request.query_params))
            owner = Owner(ticket.principal.tenant_id)
            rows, more = await self._store.page(owner, PageQuery(params.after, params.limit, "desc"))
            listing = FineTuningJobList(
                data=[FineTuningJob.model_validate(job_object(r)) for r in rows], has_more=more
            )
            return answer(ticket, listing.model_dump())

    async def events(self, request: Request, job_id: str) -> Response:
        async with self._objects.enter(request, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events") as ticket:
            params = validate(PageParams, dict(request.query_params))
            await self._own(ticket.principal.tenant_id, job_id)
            rows, more = await self._store.events(job_id, params.after, params.limit)
            listing = JobEventList(data=[event_object(r) for r in rows], has_more=more)
            return answer(ticket, listing.model_dump())

    async def checkpoints(self, request: Request, job_id: str) -> Response:
        """The adapter a succeeded job made, at its last step (OpenAI keeps the last three epochs';
        here each job keeps its final adapter only)."""
        path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"
        async with self._objects.enter(request, path) as ticket:
            row = await self._own(ticket.principal.tenant_id, job_id)
            data = []
            if row.status == "succeeded" and row.fine_tuned_model and row.finished_at is not None:
                metrics = {k: float(v) for k, v in (row.metrics or {}).items() if k in _METRICS}
                data.append(
                    JobCheckpoint(
                        id="ftckpt-" + row.id.removeprefix(JOB_PREFIX),
                        created_at=unix(row.finished_at) or 0,
                        fine_tuned_model_checkpoint=row.fine_tuned_model,
                        fine_tuning_job_id=row.id,
                        metrics=metrics,
                        step_number=int((row.metrics or {}).get("step", 0)),
                    )
                )
            first, last = (data[0].id, data[-1].id) if data else (None, None)
            listing = JobCheckpointList(data=data, first_id=first, last_id=last, has_more=False)
            return answer(ticket, listing.model_dump())

    async def cancel(self, request: Request, job_id: str) -> Response:
        """A queued job is cancelled at once; a running one when its run next looks (its trainer
        process is stopped). A finished job cannot be cancelled (400, as OpenAI answers)."""
        path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel"
        async with self._objects.enter(request, path) as ticket:
            tenant = ticket.principal.tenant_id
            row = await self._own(tenant, job_id)
            if row.status in FINAL:
                raise InvalidRequest(
                    f"Job has already completed: {job_id}", param=None, code="invalid_request_error"
                )
            job = await self._runner.cancel(job_id, tenant_id=tenant)
            async with self._store.db.session() as session, session.begin():
                fresh = await self._store.find(session, Owner(tenant), job_id)
                assert fresh is not None
                if fresh.status not in FINAL:
                    # Cancelled now as OpenAI answers; a running trainer is stopped by its run.
                    fresh.status, fresh.finished_at = "cancelled", utcnow()
                    add_event(session, job_id, "Fine-tuning job cancelled by the user")
                _ = job
            return answer(ticket, job_object(await self._own(tenant, job_id)))

    async def delete_model(self, request: Request, model: str) -> Response:
        """DELETE /v1/models/{model}: a fine-tuned model of the caller's tenant (OpenAI's answer
        `{"id", "object": "model", "deleted": true}`); any other model is a 404."""
        async with self._objects.enter(request, "/v1/models/{model}") as ticket:
            tenant = ticket.principal.tenant_id
            if self._adapters is None or not await self._adapters.delete(tenant, model):
                raise no_such_model(model)
            return answer(ticket, {"id": model, "object": "model", "deleted": True})

    async def _own(self, tenant: str | None, job_id: str) -> FineTuningJobRow:
        row = await self._store.get(Owner(tenant), job_id)
        if row is None:
            raise NotFound(f"Could not find fine-tuning job {job_id}", param="fine_tuning_job_id")
        return row


_METRICS = ("step", "train_loss", "valid_loss", "full_valid_loss")


def _check_positive(name: str, value: Any, kind: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidRequest(
            f"Invalid value for '{name}': expected a positive number or 'auto'.",
            param=f"method.{kind}.hyperparameters.{name}",
        )


def add_event(
    session: Any, job_id: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
) -> None:
    session.add(
        FineTuningEventRow(
            id="ftevent-" + secrets.token_hex(12),
            job_id=job_id,
            created_at=utcnow(),
            level=level,
            type="metrics" if data is not None else "message",
            message=message,
            data=data,
        )
    )


def event_object(row: FineTuningEventRow) -> JobEvent:
    return JobEvent(
        id=row.id,
        created_at=unix(row.created_at) or 0,
        level=row.level,
        message=row.message,
        data=row.data,
        type=row.type,
    )


def job_object(row: FineTuningJobRow) -> dict[str, Any]:
    method = dict(row.method)
    hyper = dict(method.get(method["type"], {}).get("hyperparameters", {}))
    return FineTuningJob(
        id=row.id,
        created_at=unix(row.created_at) or 0,
        error=row.error,
        fine_tuned_model=row.fine_tuned_model,
        finished_at=unix(row.finished_at),
        hyperparameters={k: v for k, v in hyper.items() if k != "beta"},
        model=row.model,
        organization_id=row.tenant_id or ANONYMOUS_TENANT,
        result_files=[],
        seed=row.seed,
        status=row.status,
        trained_tokens=row.trained_tokens,
        training_file=row.training_file,
        validation_file=row.validation_file,
        metadata=dict(row.tags) if row.tags else None,
        method=method,
    ).model_dump()
