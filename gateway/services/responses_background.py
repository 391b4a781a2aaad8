"""Background responses (`background: true`): a job on the durable runner (gateway/jobs), so any
replica may run it and any replica may answer its retrieve, cancel and stream.

The create request stores the response as `queued` with its first events (`response.created`,
`response.queued`) and submits the job in the same transaction, then answers at once (or, with
`stream`, replays the events from the store as they are written). The job streams the answer from
vLLM's /v1/responses and writes its events in batches (every `flush_s`, each batch committed with
the job's checkpoint under its lease), renumbered after the gateway's own; the final response is
committed with the last batch. Usage goes to the ledger when the job ends (its own row, request id
the response's). A cancel marks the response `cancelled` at once and cancels the job, whose run
closes its engine stream (vLLM aborts the request). A run that died mid-answer cannot continue the
engine's half-written answer: the next run fails the response (`server_error`) instead of
generating a second, different one under the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from gateway.admission import Outcome, Ticket
from gateway.errors import APIError, InvalidRequest
from gateway.jobs import Job, JobCancelled, JobRunner
from gateway.limits.accounting import Accountant, Tab
from gateway.services.citation_check import CitationChecks
from gateway.services.conversations import Conversations
from gateway.services.memory_responses import ResponsesMemory, placement_json, placement_of
from gateway.services.pii import Redactor
from gateway.services.responses_background_parts import (
    OWN_EVENTS,
    JobSink,
    decoded,
    encoded,
    shower,
    verification_of,
)
from gateway.services.responses_hosted import HostedShift
from gateway.services.responses_items import queued
from gateway.services.responses_redacted import DeltaHold, redacted_events, redacted_payload
from gateway.services.responses_stream import TERMINAL, ResponseEvents, StoredEventsStream, usage_of
from gateway.store.owned import Owner
from gateway.store.responses import FINAL, ResponseRow, ResponseStore
from gateway.upstreams.attempt import Target
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamStream
from gateway.upstreams.timeouts import Deadline

if TYPE_CHECKING:
    from gateway.services.responses_turn import Turn

KIND = "response"
PATH = "/v1/responses"
LEDGER_ENDPOINT = "POST /v1/responses (background)"
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


def responses_plan(dispatcher: Dispatcher, model: str) -> list[Target]:
    """The model's chain with only the upstreams that serve the Responses API (vLLM does; an
    OpenAI-compatible provider is not assumed to): 400 when the model's own are all providers."""
    plan = dispatcher.plan(model)
    served = [
        dataclasses.replace(
            target, members=[m for m in target.members if m.upstream.capabilities.serves_responses]
        )
        for target in plan
    ]
    if plan[0].members and not served[0].members:
        raise InvalidRequest(
            f"The model `{model}` is served by an OpenAI-compatible provider, for which this gateway "
            "does not serve the Responses API; call /v1/chat/completions for it.",
            param="model",
        )
    return [served[0], *(target for target in served[1:] if target.members)]


class Background:
    def __init__(
        self,
        store: ResponseStore,
        jobs: JobRunner,
        dispatcher: Dispatcher,
        accountant: Accountant,
        *,
        flush_s: float = 0.2,
        poll_s: float = 0.2,
        conversations: Conversations | None = None,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._dispatcher = dispatcher
        self._accountant = accountant
        self._flush_s = flush_s
        self._poll_s = poll_s
        self._conversations = conversations
        # PII redaction of what is stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None
        # The search tools' citation verification pass (set by tools_setup.py); None: none.
        self.citations: CitationChecks | None = None
        # Memory in responses: the turn queued for extraction when the job ends (set with chat's).
        self.memory: ResponsesMemory | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # One run per job: a response's answer is not generated twice (see the module's words).
        jobs.register(KIND, self.run, max_attempts=2)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` off the request path (a streamed response stored at its end)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def submit(self, ticket: Ticket, turn: Turn, owner: Owner) -> Response:
        """Store the queued response with its first events and submit its job, in one commit."""
        from gateway.services.responses import row_of

        body = queued(
            turn.response_id,
            turn.model,
            {
                **turn.engine_body,
                # The request's own: the engine body's may hold the placed memories.
                "instructions": turn.parsed.instructions,
                "previous_response_id": turn.parsed.previous_response_id,
                "conversation": turn.parsed.conversation,
            },
            int(time.time()),
            turn.metadata,
        )
        payload: dict[str, Any] = {
            "response_id": turn.response_id,
            "model": turn.model,
            "body": {**turn.engine_body, "stream": True},
        }
        if turn.hosted:  # what the citations point at (responses_background_parts.py)
            payload["hosted"] = encoded(turn.hosted)
        if turn.verification is not None:
            payload["verify"] = {"method": turn.verification.method}
        if isinstance(turn.parsed.conversation, str):
            payload["conversation"] = turn.parsed.conversation
        if turn.memory is not None:  # placed at create time: the job's body holds the block already
            payload["memory"] = placement_json(turn.memory)
        payload["new_items"] = turn.new_items
        async with self._store.db.session() as session:
            record = await self._jobs.submit(
                KIND,
                owner.tenant_id,
                payload,
                created_by=owner.key_id,
                user=turn.parsed.user,
                session=session,
            )
            row = row_of(ticket, turn, body, status="queued", job_id=record.id)
            if self.redactor is not None:  # as a foreground response's row (docs/governance.md)
                row = await self.redactor.stored_row(row, "input_items", "body")
            await self._store.add(row, session)
            self._store.add_events(
                session,
                turn.response_id,
                [
                    {"type": "response.created", "sequence_number": 0, "response": row.body},
                    {"type": "response.queued", "sequence_number": 1, "response": row.body},
                ],
            )
            await session.commit()
        # The request is counted now; the answer's tokens are the job's own ledger row.
        ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
        if turn.parsed.stream:
            return StoredEventsStream(
                self._store, turn.response_id, -1, poll_s=self._poll_s, headers=ticket.limit_headers
            )
        return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)

    async def cancel(self, row: ResponseRow, owner: Owner) -> dict[str, Any]:
        """Mark the response cancelled (unless it has ended) and cancel its job."""
        if row.status in FINAL:
            return row.body
        body = {**row.body, "status": "cancelled"}
        changed = await self._store.mark(row.id, "cancelled", body)
        if row.job_id is not None:
            await self._jobs.cancel(row.job_id, tenant_id=row.tenant_id)
        if not changed:
            now = await self._store.get(owner, row.id)
            return now.body if now is not None else body
        return body

    # The job ------------------------------------------------------------------------------------

    async def run(self, job: Job) -> dict[str, Any]:
        response_id = str(job.payload["response_id"])
        row = await self._store.get_any(response_id)
        if row is None or row.status in FINAL:
            return {"status": row.status if row is not None else "deleted"}
        hosted = decoded(job.payload.get("hosted"))
        show = shower(row, hosted, placement_of(job.payload.get("memory")))
        if (job.checkpoint or {}).get("started"):
            await self._fail(job, row, _died())
            return {"status": "failed"}
        running = {**row.body, "status": "in_progress"}
        # Once started the prompt is never sent again: the job's copy need not keep its PII.
        payload = await redacted_payload(self.redactor, job.tenant_id, job.payload)
        async with job.transaction() as step:
            if payload is not None:
                step.replace_payload(payload)
            await self._store.finish(step.session, response_id, "in_progress", running)
            self._store.add_events(
                step.session,
                response_id,
                [{"type": "response.in_progress", "sequence_number": 2, "response": running}],
            )
            step.checkpoint({"started": True, "events": OWN_EVENTS})
        tab = self._accountant.open(
            tenant_id=job.tenant_id, key_id=job.created_by, endpoint=LEDGER_ENDPOINT, request_id=row.id
        )
        tab.model, tab.stream = str(job.payload["model"]), True
        try:
            return await self._generate(job, row, show, tab)
        except APIError as exc:
            # The engine refused or failed before the answer was whole: the response fails at once
            # (a second run could not continue it either).
            tab.close(status=exc.status, outcome=Outcome.FAILED.value, completion_tokens=0)
            await self._fail(job, row, {"code": exc.code or exc.type, "message": exc.message})
            return {"status": "failed"}

    async def _fail(self, job: Job, row: ResponseRow, error: dict[str, Any]) -> None:
        """End the response as failed, with OpenAI's `response.failed` after the events written."""
        failed = {**row.body, "status": "failed", "error": error}
        events = int((job.checkpoint or {}).get("events", OWN_EVENTS))
        ending = await self._kept(
            job, [{"type": "response.failed", "sequence_number": events, "response": failed}]
        )
        async with job.transaction() as step:
            await self._store.finish(step.session, row.id, "failed", failed)
            self._store.add_events(step.session, row.id, ending)
            step.checkpoint({"started": True, "events": events + 1})

    async def _generate(self, job: Job, row: ResponseRow, show: Any, tab: Tab) -> dict[str, Any]:
        model = str(job.payload["model"])
        plan = responses_plan(self._dispatcher, model)
        deadline = Deadline(plan[0].timeouts.total_s)
        sink = await self._sink(job, show)
        async with job.turn():
            attempt = await self._dispatcher.open_stream(
                PATH, orjson.dumps(job.payload["body"]), {"x-request-id": row.id}, plan, deadline
            )
            tab.served_model = attempt.target.model
            upstream = UpstreamStream(
                attempt, inter_token_s=attempt.target.timeouts.inter_token_s, deadline=deadline, failover=None
            )
            pumping = asyncio.create_task(upstream.run(sink))
            try:
                while not pumping.done():
                    waiting = asyncio.create_task(job.interrupted.wait())
                    await asyncio.wait(
                        [pumping, waiting], timeout=self._flush_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiting.cancel()
                    if job.cancel_requested:
                        pumping.cancel()
                        tab.close(
                            status=499, outcome=Outcome.CLIENT_CLOSED.value, completion_tokens=sink.deltas
                        )
                        raise JobCancelled({"status": "cancelled"})
                    await self._flush(job, row.id, sink)
            finally:
                if not pumping.done():
                    pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pumping
                await upstream.close()
        await sink.finish()
        final = sink.events.final
        status = str(final.get("status", "completed")) if final is not None else "failed"
        if final is None:
            final = {**row.body, "status": "failed", "error": _died("The engine ended the stream early.")}
            sink.add({"type": "response.failed", "response": final})
        events, kept = await self._kept(job, sink.take()), await self._kept_body(job, final)
        async with job.transaction() as step:
            self._store.add_events(step.session, row.id, events)
            await self._store.finish(step.session, row.id, status, kept)
            step.checkpoint({"started": True, "events": sink.next})
        await self._ended(job, row, final)
        failed = status == "failed"
        tab.close(
            status=500 if failed else 200,
            outcome=(Outcome.FAILED if failed else Outcome.COMPLETED).value,
            usage=usage_of(final),
        )
        return {"status": status}

    async def _ended(self, job: Job, row: ResponseRow, final: dict[str, Any]) -> None:
        """Once the response is stored: its turn appended to its conversation, and queued for
        extraction when memories were placed at create time (memory was on for the key then)."""
        fresh = row.input_items[len(row.input_items) - int(job.payload.get("new_items", 0)) :]
        placement = placement_of(job.payload.get("memory"))
        if self.memory is not None and placement is not None:
            await self.memory.remember(job.tenant_id, job.created_by, placement.user, fresh, final, row.id)
        conversation = job.payload.get("conversation")
        if self._conversations is not None and isinstance(conversation, str):
            owner = Owner(job.tenant_id, job.created_by)
            with contextlib.suppress(APIError):  # the conversation was deleted meanwhile
                await conversation_turn(
                    self._conversations, owner, conversation, fresh, final, end_user=row.end_user
                )

    async def _sink(self, job: Job, show: Any) -> JobSink:
        redacts = self.redactor is not None and await self.redactor.redacts_stored(job.tenant_id)
        hosted = decoded(job.payload.get("hosted"))
        verification = verification_of(self.citations, job.payload, hosted)
        finish = verification.apply if verification is not None else None
        shift = HostedShift(hosted) if hosted else None
        return JobSink(ResponseEvents(show, finish), DeltaHold() if redacts else None, shift)

    async def _kept(self, job: Job, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Events as the tenant's PII policy lets them be stored (responses_redacted.py)."""
        return await redacted_events(self.redactor, job.tenant_id, events)

    async def _kept_body(self, job: Job, body: dict[str, Any]) -> dict[str, Any]:
        return body if self.redactor is None else await self.redactor.stored(job.tenant_id, body)

    async def _flush(self, job: Job, response_id: str, sink: JobSink) -> None:
        events = await self._kept(job, sink.take())
        if events:
            async with job.transaction() as step:
                self._store.add_events(step.session, response_id, events)
                step.checkpoint({"started": True, "events": sink.next})


async def conversation_turn(
    conversations: Conversations,
    owner: Owner,
    conversation_id: str,
    fresh: list[dict[str, Any]],
    response: dict[str, Any],
    *,
    end_user: str | None,
) -> None:
    """Add a response's own input items and its output items to its conversation, once it is done.
    Only a response that answered (completed, or incomplete at its max_output_tokens) adds its turn:
    a failed or cancelled one adds nothing, so the conversation never holds a question without
    its answer and a retry starts from the same place."""
    if response.get("status") not in ("completed", "incomplete"):
        return
    output = response.get("output")
    await conversations.append(
        owner, conversation_id, [*fresh, *(output if isinstance(output, list) else [])], end_user=end_user
    )


def _died(
    message: str = "The replica generating this response stopped before it was complete.",
) -> dict[str, Any]:
    return {"code": "server_error", "message": message}


__all__ = ["KIND", "TERMINAL", "Background", "responses_plan"]
