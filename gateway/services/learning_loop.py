"""The learning loop (issue 20, point 5; docs/fine-tuning.md "The learning loop"): a tenant's policy
turns the feedback its users give into new adapter versions, promoted only when not worse.

A scheduled check (`learning-check`, one job per interval slot whatever the number of replicas, as
retention's) looks at every enabled policy: when at least `min_new_feedback` feedback rows arrived
since the last cycle (their `seq` past the state's cursor), it starts a cycle (`learning-cycle`, one
at a time per tenant). A cycle, acting as the policy's key (limited and billed as that key's):

1. splits the tenant's feedback: a row is held out when the hash of its id falls under
   `holdout_fraction` (so a row held out once stays held out, and every version is measured on the
   same growing slice); the new rows that are not held out become the training file (the export's
   lines, `gateway/services/feedback_export.py`), written to the Files API;
2. creates a fine-tuning job on the base model (`POST /v1/fine_tuning/jobs`, the suffix the
   policy's) and waits for it;
3. evaluates the new version and the current one (the promoted version, else the base model) on the
   held-out slice: greedy answers scored by the evals service's scorer the policy names against the
   corrected (supervised) or preferred (dpo) answer: `exact`, or `judge` (the policy's
   `judge_model` grades each answer 0..1 with its `rubric`, asked as the policy's key);
4. promotes the new version when its score is not below the current's: the alias
   `ft:<base>:<tenant>:<suffix>` then resolves to it (`AdapterServing`); otherwise it stays
   addressable by its full name and the alias keeps its version.

Each step is an event of the fine-tuning job and an audit event (`learning_loop.*`). The cursor moves
past the cycle's rows once the cycle is decided, so a refused batch is not trained on again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.errors import APIError
from gateway.jobs import Job, JobOptions, JobRunner
from gateway.protocol.fine_tuning import FINAL
from gateway.services.evals import Ask, EvalItem, score
from gateway.services.feedback_export import FileWriter, training_lines
from gateway.services.fine_tuning import add_event
from gateway.services.own_calls import post_json
from gateway.store import utcnow
from gateway.store.feedback import FeedbackFilter, FeedbackStore, StoredFeedback
from gateway.store.files import Owner as FileOwner
from gateway.store.fine_tuning import FineTuningJobRow, FineTuningStore
from gateway.store.learning import LearningStore
from gateway.store.owned import Owner
from gateway.store.records import AuditContext

CHECK_KIND, CYCLE_KIND = "learning-check", "learning-cycle"
_ACTOR = AuditContext(actor="learning-loop")


@dataclass(frozen=True)
class LoopOptions:
    interval_s: float = 3600.0
    poll_s: float = 2.0
    max_feedback: int = 10_000
    max_tokens: int = 64
    timeout_s: float = 7200.0


def alias(base: str, tenant_id: str, suffix: str) -> str:
    """The name that follows the promoted version: OpenAI's model name without the job id."""
    return f"ft:{base}:{tenant_id}:{suffix}"


def held_out(feedback_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(feedback_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def eval_items(
    rows: list[StoredFeedback], method: str, policy: dict[str, Any] | None = None
) -> list[EvalItem]:
    """The held-out rows as eval items: the prompt, and the answer the feedback asks for (the
    export's lines: the correction; for dpo the preferred answer), graded by the policy's scorer
    (`exact` unless it names `judge`, with its `judge_model` and `rubric`)."""
    policy = policy or {}
    scorer = str(policy.get("scorer") or "exact")
    judge = (
        {"judge_model": policy.get("judge_model"), "rubric": policy.get("rubric")}
        if scorer == "judge"
        else {}
    )
    items = []
    for line in training_lines(rows, method).lines:
        raw = orjson.loads(line)
        if method == "dpo":
            messages, wanted = raw["input"]["messages"], raw["preferred_output"][0]
        else:
            messages, wanted = raw["messages"][:-1], raw["messages"][-1]
        if isinstance(wanted.get("content"), str):
            items.append(EvalItem(messages, wanted["content"], scorer, params={"temperature": 0}, **judge))
    return items


class LearningLoop:
    def __init__(
        self,
        store: LearningStore,
        feedback: FeedbackStore,
        writer: FileWriter,
        jobs: FineTuningStore,
        runner: JobRunner,
        options: LoopOptions,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.options = options
        self._feedback = feedback
        self._writer = writer
        self._runner = runner
        self._app: ASGIApp | None = None
        self.clock = clock

    def bind(self, app: ASGIApp) -> None:
        self._app = app

    def register(self) -> None:
        self._runner.register(CHECK_KIND, self._tick, priority=-5, concurrency=1)
        # A cycle waits minutes on its training job (which has its own kind's slot).
        self._runner.register(CYCLE_KIND, self._cycle_job, priority=-19, concurrency=1, max_attempts=1)

    async def resolve_alias(self, tenant_id: str | None, model: str) -> str | None:
        """The promoted version's full name when `model` is the tenant's alias, else None."""
        parts = model.split(":")
        if tenant_id is None or len(parts) != 4 or parts[2] != tenant_id:
            return None
        policy = await self.store.policy(tenant_id)
        if policy is None or alias(str(policy["base_model"]), tenant_id, str(policy["suffix"])) != model:
            return None
        promoted = (await self.store.state(tenant_id)).get("promoted")
        row = await self.jobs.get(Owner(tenant_id), str(promoted)) if promoted else None
        return row.fine_tuned_model if row is not None else None

    async def schedule(self, after: datetime | None = None) -> None:
        """Submit the check job of the slot holding `after` (default: now), unless it exists."""
        at = after or self.clock()
        slot = int((at - datetime(1970, 1, 1)).total_seconds() // self.options.interval_s)
        job_id = f"{CHECK_KIND}-{slot}"
        if await self._runner.get(job_id) is not None:
            return
        run_after = datetime(1970, 1, 1) + timedelta(seconds=slot * self.options.interval_s)
        with contextlib.suppress(IntegrityError):  # another replica submitted this slot first
            await self._runner.submit(
                CHECK_KIND, None, {}, options=JobOptions(run_after=run_after, job_id=job_id)
            )

    async def _tick(self, job: Job) -> dict[str, Any]:
        started = await self.check()
        await self.schedule(self.clock() + timedelta(seconds=self.options.interval_s))
        return {"cycles": started}

    async def check(self) -> list[str]:
        """A cycle for each enabled policy with enough new feedback and no cycle under way."""
        started = []
        for tenant_id, policy, state in await self.store.enabled():
            if state.get("cycle") and not await self._cycle_over(tenant_id, str(state["cycle"])):
                continue
            rows = await self._rows(tenant_id)
            new = [row for row in rows if row.seq > int(state.get("cursor", 0))]
            if len(new) < int(policy["min_new_feedback"]):
                continue
            cycle = f"learncycle-{secrets.token_hex(8)}"
            details = {"cycle": cycle, "new_feedback": len(new)}
            audit = (_ACTOR, "learning_loop.start", details)
            if not await self.store.update_state(tenant_id, {"cycle": cycle}, at=self.clock(), audit=audit):
                continue
            await self._runner.submit(
                CYCLE_KIND, tenant_id, {"cursor": max(r.seq for r in new)}, options=JobOptions(job_id=cycle)
            )
            started.append(cycle)
        return started

    async def _cycle_over(self, tenant_id: str, cycle: str) -> bool:
        """Whether the recorded cycle ended without clearing itself (its replica died); then it is
        cleared, and the tenant may start another."""
        record = await self._runner.get(cycle)
        if record is not None and not record.done:
            return False
        return await self.store.update_state(tenant_id, {"cycle": None}, at=self.clock(), expect_cycle=cycle)

    async def _rows(self, tenant_id: str) -> list[StoredFeedback]:
        return await self._feedback.for_export(Owner(tenant_id), FeedbackFilter(), self.options.max_feedback)

    async def _cycle_job(self, job: Job) -> dict[str, Any]:
        tenant_id = str(job.tenant_id)
        try:
            return await self.cycle(job, tenant_id, int(job.payload["cursor"]))
        finally:
            await self.store.update_state(tenant_id, {"cycle": None}, at=self.clock(), expect_cycle=job.id)

    async def cycle(self, job: Job, tenant_id: str, cursor: int) -> dict[str, Any]:
        policy, state = await self.store.policy(tenant_id), await self.store.state(tenant_id)
        if policy is None:
            return {"skipped": "the policy was removed"}
        method, fraction = str(policy["method"]), float(policy["holdout_fraction"])
        rows = [row for row in await self._rows(tenant_id) if row.seq <= cursor]
        held = [row for row in rows if held_out(row.id, fraction)]
        kept = {row.id for row in held}
        fresh = [row for row in rows if row.seq > int(state.get("cursor", 0)) and row.id not in kept]
        lines = training_lines(fresh, method).lines
        items = eval_items(held, method, policy)
        if not lines or not items:
            reason = "no training lines" if not lines else "no held-out examples"
            await self._audit(tenant_id, "learning_loop.skip", {"cycle": job.id, "reason": reason})
            return {"skipped": reason}
        trained = await self._train(job, tenant_id, policy, b"".join(lines), len(items))
        if trained.status != "succeeded" or not trained.fine_tuned_model:
            await self._audit(tenant_id, "learning_loop.failed", {"cycle": job.id, "job": trained.id})
            return {"job": trained.id, "status": trained.status}
        return await self._decide(job, tenant_id, policy, trained, items, cursor)

    async def _train(
        self, job: Job, tenant_id: str, policy: dict[str, Any], data: bytes, held: int
    ) -> FineTuningJobRow:
        owner = FileOwner(tenant_id, created_by=str(policy["key_id"]))
        file = await self._writer.write(owner, f"learning-{job.id}.jsonl", data, "fine-tune")
        body = {
            "model": policy["base_model"],
            "training_file": file.id,
            "suffix": policy["suffix"],
            "method": {"type": policy["method"]},
            "metadata": {"learning_cycle": job.id},
        }
        created = await self._post(policy, job.id, "/v1/fine_tuning/jobs", body)
        job_id = str(created["id"])
        lines = data.count(b"\n")
        await self._event(
            job_id, f"Learning loop {job.id}: training on {lines} new feedback lines, {held} held out"
        )
        await self._audit(tenant_id, "learning_loop.train", {"cycle": job.id, "job": job_id, "lines": lines})
        deadline = self.clock() + timedelta(seconds=self.options.timeout_s)
        while True:
            job.check()
            async with self.jobs.db.session() as session:
                row = await self.jobs.by_id(session, job_id)
            if row is None or row.status in FINAL or self.clock() > deadline:
                assert row is not None, f"fine-tuning job {job_id} vanished"
                return row
            await asyncio.sleep(self.options.poll_s)

    async def _decide(
        self,
        job: Job,
        tenant_id: str,
        policy: dict[str, Any],
        trained: FineTuningJobRow,
        items: list[EvalItem],
        cursor: int,
    ) -> dict[str, Any]:
        state = await self.store.state(tenant_id)
        current = await self._current(tenant_id, policy, state)
        candidate = str(trained.fine_tuned_model)
        try:
            new_score = await self._score(policy, job.id, candidate, items)
            old_score = await self._score(policy, job.id, current, items)
        except APIError as exc:
            return await self._unjudged(job, tenant_id, trained, exc)
        promote = new_score >= old_score
        details = {
            "cycle": job.id,
            "job": trained.id,
            "model": candidate,
            "current": current,
            "score": new_score,
            "current_score": old_score,
            "held_out": len(items),
        }
        await self._event(
            trained.id,
            f"Learning loop {job.id}: evaluated on {len(items)} held-out examples: "
            f"{new_score:.3f} against {old_score:.3f} for {current}",
            data=details,
        )
        name = alias(str(policy["base_model"]), tenant_id, str(policy["suffix"]))
        changes: dict[str, Any] = {"cursor": cursor, **({"promoted": trained.id} if promote else {})}
        action = "learning_loop.promote" if promote else "learning_loop.refuse"
        await self.store.update_state(tenant_id, changes, at=self.clock(), audit=(_ACTOR, action, details))
        message = (
            f"Learning loop {job.id}: promoted; {name} now answers as {candidate}"
            if promote
            else f"Learning loop {job.id}: not promoted (worse than {current}); {name} is unchanged"
        )
        await self._event(trained.id, message)
        return {**details, "promoted": promote}

    async def _unjudged(
        self, job: Job, tenant_id: str, trained: FineTuningJobRow, exc: APIError
    ) -> dict[str, Any]:
        """The judge failed: nothing is promoted and the cursor stays (the next check retries),
        as after a failed training job."""
        details = {"cycle": job.id, "job": trained.id, "reason": f"judge: {exc.message}"}
        await self._event(
            trained.id, f"Learning loop {job.id}: not evaluated (the judge failed: {exc.message})"
        )
        await self._audit(tenant_id, "learning_loop.failed", details)
        return {**details, "promoted": False}

    async def _current(self, tenant_id: str, policy: dict[str, Any], state: dict[str, Any]) -> str:
        promoted = state.get("promoted")
        if promoted:
            row = await self.jobs.get(Owner(tenant_id), str(promoted))
            if row is not None and row.status == "succeeded" and row.adapter_key and row.fine_tuned_model:
                return row.fine_tuned_model
        return str(policy["base_model"])

    async def _score(self, policy: dict[str, Any], cycle: str, model: str, items: list[EvalItem]) -> float:
        total = 0.0
        for number, item in enumerate(items):
            body = {
                "max_tokens": self.options.max_tokens,
                **item.params,
                "model": model,
                "messages": item.messages,
            }
            try:
                answer = await self._post(policy, f"{cycle}-{number}-{model}", "/v1/chat/completions", body)
            except APIError:
                continue  # an answer that failed scores 0
            # A judge that fails raises: no version is promoted on grades it did not give.
            total += await score(item, _text(answer), self._judge(policy, f"{cycle}-{number}-{model}"))
        return total / len(items)

    def _judge(self, policy: dict[str, Any], request_id: str) -> Ask:
        """The `judge` scorer's call: the judge model asked through the gateway as the policy's key
        (limited and billed as its held-out answers are), greedy, with the scorer's JSON schema and
        the answers' token cap (a grade is a few tokens; one cut short scores 0)."""

        async def ask(model: str, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
            body = {
                "model": model,
                "messages": messages,
                "response_format": response_format,
                "temperature": 0,
                "max_tokens": self.options.max_tokens,
            }
            return _text(await self._post(policy, f"{request_id}-judge", "/v1/chat/completions", body))

        return ask

    async def _post(
        self, policy: dict[str, Any], request_id: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        assert self._app is not None, "LearningLoop.bind(app) was not called"
        marks = {ACTING_AS: InternalCall(str(policy["key_id"]), request_id)}
        return await post_json(self._app, path, body, marks, "learning loop")

    async def _event(self, job_id: str, message: str, data: dict[str, Any] | None = None) -> None:
        async with self.jobs.db.session() as session, session.begin():
            add_event(session, job_id, message, data=data)

    async def _audit(self, tenant_id: str, action: str, details: dict[str, Any]) -> None:
        await self.store.update_state(tenant_id, {}, at=self.clock(), audit=(_ACTOR, action, details))


def _text(answer: dict[str, Any]) -> str:
    """A chat completion's first answer's text."""
    return str(((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
