"""Per-tenant caps on fine-tuning (issue 20 point 6; docs/fine-tuning.md "Caps"): how many jobs a
tenant (or one key) may have active at once, and how many fine-tuned models (stored adapters) it
may keep, its active jobs counted as the models they will make.

The caps are the admin API's `fine_tuning_jobs` and `fine_tuning_models` on the tenant (else the
operator's TANTRA_FINE_TUNING_MAX_JOBS / _MAX_MODELS, 0 meaning none) and on the key when it has its
own. Checked when a job is created, in the transaction that writes it, after the tenant's row is
locked (`FOR UPDATE` on PostgreSQL: two replicas cannot both squeeze in; SQLite has one writer).

Refusals as OpenAI's own fine-tuning quota answers: too many active jobs is a 429 whose message
names the running and pending jobs (OpenAI: "This fine-tune request has been rate-limited. Your
organization has reached the maximum of N active requests ...", code `daily_rate_limit_exceeded`);
too many models is a 400 (`fine_tuned_model_limit_exceeded`, Tantra's own: OpenAI documents no cap
on stored models): deleting a model frees room, waiting does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.errors import APIError, InvalidRequest
from gateway.store.fine_tuning import FineTuningJobRow
from gateway.store.models import Tenant

ACTIVE = ("validating_files", "queued", "running")


class TooManyJobs(APIError):
    status = 429
    type = "invalid_request_error"
    code = "daily_rate_limit_exceeded"


@dataclass(frozen=True)
class FineTuningCaps:
    # The operator's defaults for tenants without their own cap; 0: none.
    max_jobs: int = 0
    max_models: int = 0

    async def check(self, session: AsyncSession, principal: Principal, model: str) -> None:
        """Raise the refusal when one more job would pass a cap of the caller's key or tenant."""
        table = FineTuningJobRow
        if principal.tenant_id is not None:
            lock = select(Tenant.id).where(Tenant.id == principal.tenant_id).with_for_update()
            await session.execute(lock)
        tenant = (
            table.tenant_id.is_(None)
            if principal.tenant_id is None
            else table.tenant_id == principal.tenant_id
        )
        scopes: list[tuple[str, ColumnElement[bool], int | None, int | None]] = [
            (
                "organization",
                tenant,
                principal.tenant_limits.fine_tuning_jobs or self.max_jobs or None,
                principal.tenant_limits.fine_tuning_models or self.max_models or None,
            )
        ]
        if principal.key_id is not None:
            keys = principal.key_limits
            scopes.append(
                (
                    "API key",
                    table.created_by == principal.key_id,
                    keys.fine_tuning_jobs,
                    keys.fine_tuning_models,
                )
            )
        for scope, mine, max_jobs, max_models in scopes:
            running, pending, models = await _counts(session, mine)
            if max_jobs is not None and running + pending >= max_jobs:
                raise TooManyJobs(
                    f"This fine-tune request has been rate-limited. Your {scope} has reached the maximum "
                    f"of {max_jobs} active requests ({running} running, {pending} pending) for the "
                    f"model '{model}'. Try again once one of them has finished, or cancel one."
                )
            if max_models is not None and models + running + pending >= max_models:
                raise InvalidRequest(
                    f"Your {scope} has reached its limit of {max_models} fine-tuned models "
                    f"({models} stored, {running + pending} being trained). Delete a fine-tuned model "
                    "(DELETE /v1/models/{model}) before creating another job.",
                    param=None,
                    code="fine_tuned_model_limit_exceeded",
                )


async def _counts(session: AsyncSession, mine: ColumnElement[bool]) -> tuple[int, int, int]:
    """(running, pending: validating or queued, stored models) of the jobs `mine` selects."""
    table = FineTuningJobRow
    query = (
        select(table.status, func.count())
        .where(mine, table.status.in_((*ACTIVE, "succeeded")))
        .where((table.status != "succeeded") | table.adapter_key.is_not(None))
        .group_by(table.status)
    )
    counts = dict((await session.execute(query)).tuples().all())
    pending = counts.get("validating_files", 0) + counts.get("queued", 0)
    return counts.get("running", 0), pending, counts.get("succeeded", 0)
