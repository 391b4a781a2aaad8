"""Scheduled evaluations (issue 23, point 8, docs/orchestration.md "Self-monitoring"): jobs of the
durable runner score an eval set against its model through the gateway's own /v1/chat/completions,
acting as the set's key (limited, billed in the ledger and traced as its requests), store the score
per served model version, and alert when a new version scores worse than the last.

A model's version is what the engine serves under its name: the model card's `root` (the checkpoint
path of a base model, the adapter's path of a LoRA adapter vLLM loaded), else its id. A run compares
its score with the latest run of the set on another version; worse by more than the margin (the
set's, else TANTRA_EVALS_REGRESSION_MARGIN) is a regression: the gauge `tantra_eval_regression`
{set, model} is 1 and a warning `eval regression` is logged, until a run scores within the margin.

Scheduling follows retention's: one `eval_schedule` job per slot of TANTRA_EVALS_SCHEDULE_S (its id
the slot's start, so replicas make one), which submits an `eval_run` job for every set whose own
interval has passed since its last run, then submits the next slot's.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.errors import APIError, NotFound
from gateway.jobs import Job, JobOptions, JobRecord, JobRunner
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.services.evals import EvalItem, score
from gateway.services.own_calls import post_json
from gateway.store import utcnow
from gateway.store.evals import EvalRunRow, EvalSetRow, EvalStore
from gateway.upstreams.catalog import ModelCatalog

SCHEDULE_KIND, RUN_KIND = "eval_schedule", "eval_run"
_log = get_logger("tantra.evals")
_ANSWER_CHARS = 200


@dataclass(frozen=True)
class EvalOptions:
    schedule_s: float
    margin: float
    max_items: int
    # Eval items answered at once in a run.
    concurrency: int = 4


class EvalRuns:
    def __init__(
        self,
        store: EvalStore,
        runner: JobRunner,
        catalog: ModelCatalog,
        metrics: GatewayMetrics,
        options: EvalOptions,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.options = options
        self._runner = runner
        self._catalog = catalog
        self._metrics = metrics
        self._app: ASGIApp | None = None
        self.clock = clock

    def bind(self, app: ASGIApp) -> None:
        self._app = app

    def register(self) -> None:
        self._runner.register(SCHEDULE_KIND, self._tick, priority=-5, concurrency=1)
        # Background work: a run's requests take the runner's request slots (job.turn()).
        self._runner.register(RUN_KIND, self._run_job, priority=-4, concurrency=1, max_attempts=2)

    # Scheduling ---------------------------------------------------------------------------------

    async def schedule(self, after: datetime | None = None) -> None:
        """Submit the check job of the slot holding `after` (default: now), unless it exists."""
        at = after or self.clock()
        seconds = (at - datetime(1970, 1, 1)).total_seconds()
        slot = int(seconds // self.options.schedule_s * self.options.schedule_s)
        job_id = f"{SCHEDULE_KIND}-{slot}"
        if await self._runner.get(job_id) is not None:
            return
        run_after = datetime(1970, 1, 1) + timedelta(seconds=slot)
        with contextlib.suppress(IntegrityError):  # another replica submitted this slot first
            await self._runner.submit(
                SCHEDULE_KIND, None, {}, options=JobOptions(run_after=run_after, job_id=job_id)
            )

    async def _tick(self, job: Job) -> dict[str, Any]:
        submitted = [record.id for record in await self.submit_due()]
        await self.schedule(self.clock() + timedelta(seconds=self.options.schedule_s))
        return {"submitted": submitted}

    async def submit_due(self) -> list[JobRecord]:
        """A run job for each scheduled set whose interval has passed since its last run."""
        now, records = self.clock(), []
        for row in await self.store.sets(every_tenant=True):
            if row.interval_s is None:
                continue
            last = await self.store.runs(row.id, limit=1)
            if last and last[-1].created_at + timedelta(seconds=row.interval_s) > now:
                continue
            records.append(await self.submit_run(row))
        return records

    async def submit_run(self, row: EvalSetRow) -> JobRecord:
        return await self._runner.submit(
            RUN_KIND, row.tenant_id, {"set_id": row.id}, created_by=row.created_by
        )

    # Running ------------------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> dict[str, Any]:
        row = await self.store.get_set(str(job.payload["set_id"]))
        if row is None:
            return {"skipped": "the eval set was deleted"}
        run = await self.run(row, job)
        return {"run_id": run.id, "score": run.score, "version": run.version, "regression": run.regression}

    async def run(self, row: EvalSetRow, job: Job | None = None) -> EvalRunRow:
        """Score the set against its model's served version, store the run and raise or clear the alert."""
        version = await self.version_of(row.model)
        run_id = f"evalrun_{secrets.token_hex(12)}"
        items = [EvalItem.from_json(raw) for raw in row.items]
        gate = asyncio.Semaphore(self.options.concurrency)

        async def graded(number: int, item: EvalItem) -> dict[str, Any]:
            async with gate:
                if job is not None:
                    job.check()
                return await self._graded(row, f"{run_id}-{number}", item, job)

        results = await asyncio.gather(*(graded(n, item) for n, item in enumerate(items)))
        total = sum(result["score"] for result in results)
        run = EvalRunRow(
            id=run_id,
            set_id=row.id,
            tenant_id=row.tenant_id,
            model=row.model,
            version=version,
            score=total / len(results),
            passed=sum(1 for result in results if result["score"] >= 1.0),
            total=len(results),
            results=results,
            created_at=self.clock(),
        )
        self._compare(row, run, await self.store.last_other_version(row.id, version))
        return await self.store.add_run(run)

    async def version_of(self, model: str) -> str:
        """The served version of `model`: its card's `root` (checkpoint or adapter path), else its id."""
        await self._catalog.refresh()
        card = await self._catalog.resolve(model)
        return str(card.get("root") or card.get("id") or model)

    async def _graded(
        self, row: EvalSetRow, request_id: str, item: EvalItem, job: Job | None
    ) -> dict[str, Any]:
        body = {"temperature": 0, **item.params, "model": row.model, "messages": item.messages}
        try:
            async with job.turn() if job is not None else contextlib.nullcontext():
                answer = await self._post(row, request_id, body)
            text = str(((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
        except APIError as exc:
            return {"score": 0.0, "error": exc.message}

        async def ask(model: str, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
            judged = {
                "model": model,
                "messages": messages,
                "response_format": response_format,
                "temperature": 0,
            }
            reply = await self._post(row, f"{request_id}-judge", judged)
            return str(((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or "")

        try:
            grade = await score(item, text, ask)
        except APIError as exc:
            return {"score": 0.0, "answer": text[:_ANSWER_CHARS], "error": f"judge: {exc.message}"}
        return {"score": grade, "answer": text[:_ANSWER_CHARS]}

    async def _post(self, row: EvalSetRow, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._app is not None, "EvalRuns.bind(app) was not called"
        marks = {ACTING_AS: InternalCall(row.created_by, request_id)}
        return await post_json(self._app, "/v1/chat/completions", body, marks, "eval")

    def _compare(self, row: EvalSetRow, run: EvalRunRow, previous: EvalRunRow | None) -> None:
        margin = row.margin if row.margin is not None else self.options.margin
        self._metrics.eval_score.labels(row.id, row.model).set(run.score)
        run.regression = previous is not None and run.score < previous.score - margin
        if previous is not None:
            run.previous_version, run.previous_score = previous.version, previous.score
        self._metrics.eval_regression.labels(row.id, row.model).set(1 if run.regression else 0)
        if run.regression:
            assert previous is not None
            _log.warning(
                "eval regression",
                eval_set=row.id,
                name=row.name,
                model=row.model,
                version=run.version,
                score=round(run.score, 4),
                previous_version=previous.version,
                previous_score=round(previous.score, 4),
                margin=margin,
            )

    async def require_set(self, set_id: str) -> EvalSetRow:
        row = await self.store.get_set(set_id)
        if row is None:
            raise NotFound(f"No eval set found with id '{set_id}'.", param="set_id")
        return row
