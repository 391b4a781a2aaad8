"""The Responses API at the gateway: POST /v1/responses, GET/DELETE /v1/responses/{id}, its cancel
and its input items ([responses.md](../../docs/responses.md)).

Generation is vLLM's own /v1/responses, sent `store: false` with the whole input rebuilt by the
gateway (a follow-up's `previous_response_id` replaced by the stored items of the responses before
it): the engine keeps nothing, so a follow-up may land on any replica and any engine. Its response
objects and SSE events are OpenAI's already; the gateway relays them, puts back what it changed on
the way in, and keeps the response (`store`, true by default as OpenAI's) in the SQL store.
Background responses run as jobs (responses_background.py).

Every endpoint is admitted like chat: authenticated, limited, one ledger row, traced; a response
belongs to its tenant (another tenant's id is the 404 of an id that does not exist).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket, validate
from gateway.errors import InvalidRequest, NotFound
from gateway.http.disconnect import unless_disconnected
from gateway.limits import Estimate, TokenEstimator
from gateway.protocol.responses_api import InputItemsParams, ResponsesRequest, RetrieveParams
from gateway.services.citation_check import CitationChecks
from gateway.services.conversations import Conversations
from gateway.services.file_search import FileSearch, Searched, latest_user_text
from gateway.services.mcp_tools import McpTools
from gateway.services.memory_chat import Later
from gateway.services.memory_responses import ResponsesMemory
from gateway.services.model_choice import ModelChoice
from gateway.services.pii import Redactor
from gateway.services.reasoning import responses_thinking_fields
from gateway.services.responses_background import Background, conversation_turn, responses_plan
from gateway.services.responses_items import for_engine, history, input_items, new_id
from gateway.services.responses_stream import ResponseEvents, ResponsesRelay, StoredEventsStream, usage_of
from gateway.services.responses_turn import Turn
from gateway.services.tool_turn import tool_answer
from gateway.services.upstream_call import chose, upstream_headers
from gateway.services.web_search import Browsed, WebSearch
from gateway.store.owned import Owner
from gateway.store.responses import FINAL, ResponseRow, ResponseStore
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamStream
from gateway.upstreams.timeouts import Deadline

RESPONSES = "/v1/responses"
ONE = "/v1/responses/{id}"
_NOTHING = Estimate(0, 0, 0)
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}
# What the gateway answers itself and does not send the engine.
_GATEWAY_KEYS = ("previous_response_id", "store", "background", "conversation", "tantra")
_CHARS_PER_TOKEN = 4
_PER_ITEM = 4


class ResponsesService:
    def __init__(
        self,
        admission: Admission,
        dispatcher: Dispatcher,
        catalog: ModelCatalog,
        estimator: TokenEstimator,
        store: ResponseStore,
        background: Background,
        *,
        poll_s: float = 0.2,
        conversations: Conversations | None = None,
    ) -> None:
        self._admission = admission
        self._dispatcher = dispatcher
        self._catalog = catalog
        self._estimator = estimator
        self._store = store
        self._background = background
        self._poll_s = poll_s
        self._conversations = conversations
        # Virtual models (`auto`, docs/orchestration.md), set by the composition root; None: none.
        self.chooser: ModelChoice | None = None
        # PII redaction of the responses stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None
        # The file_search tool over the vector stores (set by the composition root when served).
        self.file_search: FileSearch | None = None
        self.web_search: WebSearch | None = None
        # Remote MCP tools and their loop (set by the composition root when served).
        self.mcp: McpTools | None = None
        self.citations: CitationChecks | None = None  # the verification pass (tools_setup.py)
        # Memory in responses (docs/memory.md), set by the composition root with chat's; None: off.
        self.memory: ResponsesMemory | None = None

    @property
    def background(self) -> Background:
        return self._background

    async def close(self) -> None:
        """Wait for the streamed responses still being stored (at shutdown)."""
        await self._background.close()

    # POST /v1/responses --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async with self._admission.enter(request, RESPONSES) as ticket:
            # The recall's record for the panel, started once the answer is sent (or has failed).
            records: list[Callable[[], Coroutine[Any, Any, None]]] = []
            try:
                turn = await self._admit(ticket, records.append)
                answered: list[dict[str, Any]] = []
                response = await self._created(ticket, turn, answered)
            except BaseException:
                if self.memory is not None:
                    await self.memory.start(records)
                raise
            if self.memory is not None:
                foreground = turn.memory if not turn.parsed.background else None  # a job's: its own
                self.memory.after_answer(ticket, response, records, foreground, turn.fresh, answered)
            return response

    async def _created(self, ticket: Ticket, turn: Turn, answered: list[dict[str, Any]]) -> Response:
        """The create's answer: the tool loop's, a background job's, or the engine's relayed (the
        final response added to `answered` when the answer is JSON)."""
        if turn.mcp is not None and self.mcp is not None:
            finish = self._finisher(ticket, turn, answered)
            spawn = self._background.spawn
            return await tool_answer(ticket, turn, turn.mcp, self.mcp, self._dispatcher, finish, spawn)
        if turn.parsed.background:
            return await self._background.submit(ticket, turn, self._owner(ticket))
        plan = responses_plan(self._dispatcher, turn.model)
        body = orjson.dumps(turn.engine_body)
        headers = upstream_headers(ticket)
        deadline = Deadline(plan[0].timeouts.total_s)
        receive = ticket.request.receive
        if not turn.parsed.stream:
            answer, member, target = await unless_disconnected(
                receive, self._dispatcher.complete(RESPONSES, body, headers, plan, deadline)
            )
            chose(ticket, member.name, target.model)
            response = await turn.checked(turn.show(orjson.loads(answer)))
            await self._keep(ticket, turn, response)
            await self._append(ticket, turn, response)
            answered.append(response)
            ticket.settle(Outcome.COMPLETED, usage=usage_of(response))
            return _json(ticket, response)
        attempt = await unless_disconnected(
            receive, self._dispatcher.open_stream(RESPONSES, body, headers, plan, deadline)
        )
        upstream = UpstreamStream(
            attempt, inter_token_s=attempt.target.timeouts.inter_token_s, deadline=deadline, failover=None
        )
        chose(ticket, attempt.member.name, attempt.target.model)
        events = ResponseEvents(turn.show, turn.checked if turn.verification else None, turn.hosted)
        ticket.defer()

        def closed(outcome: Outcome) -> None:
            ticket.settle(outcome, usage=usage_of(events.final))
            if events.final is not None and outcome is Outcome.COMPLETED:
                answered.append(events.final)
                self._background.spawn(self._keep(ticket, turn, events.final))
                self._background.spawn(self._append(ticket, turn, events.final))

        return ResponsesRelay(upstream, events, headers=ticket.limit_headers, on_close=closed)

    async def _admit(self, ticket: Ticket, later: Later | None = None) -> Turn:
        """Read and validate, resolve the model, rebuild the input from the previous response, place
        the end user's memories (their record for the panel handed to `later`), and reserve the
        key's limits for it."""
        with ticket.stage("preprocess"):
            _, payload, parsed = await ticket.read_json(ResponsesRequest)
            name = parsed.model
            if self.chooser is not None and self.chooser.owns(name):
                name = await self.chooser.choose(ticket, payload)
            card = await self._catalog.resolve(name)
        model = str(card["id"])
        ticket.use_model(model, stream=bool(parsed.stream))
        previous = await self._previous(ticket, parsed)
        fresh = input_items(parsed.input)
        items = [*previous, *fresh]
        response_id = new_id("resp")
        engine_body = {key: value for key, value in payload.items() if key not in _GATEWAY_KEYS}
        engine_body.update(
            model=model,
            input=for_engine(items),
            store=False,
            request_id=response_id,
            stream=bool(parsed.stream),
        )
        if self.redactor is not None:  # the user's text under a `prompt` policy (docs/governance.md)
            sent = await self.redactor.user_items(ticket.principal.tenant_id, engine_body["input"])
            engine_body["input"] = engine_body["input"] if sent is None else sent
        engine_body.update(responses_thinking_fields(payload, ticket.policy.reasoning_budgets(model)))
        # Memory's query: the user's text as the engine gets it (after redaction, as chat's, and
        # before the search tools put their context in it).
        query = latest_user_text(engine_body["input"])
        metadata = parsed.metadata if isinstance(parsed.metadata, dict) else {}
        max_len = card.get("max_model_len")
        hosted: list[Searched | Browsed | None] = []
        if self.file_search is not None:
            limit = max_len if isinstance(max_len, int) else None
            hosted.append(await self.file_search.prepare(ticket, payload, items, engine_body, limit))
        if self.web_search is not None:
            query = latest_user_text(items)
            hosted.append(await self.web_search.prepare(ticket, payload, query, engine_body))
        ran = tuple(h for h in hosted if h is not None)
        mcp = self.mcp
        run = await mcp.prepare(payload, items, len(fresh), engine_body, ticket.stage) if mcp else None
        checks = self.citations.prepare(parsed.tantra, ran, model) if self.citations else None
        raw = _prompt_tokens(parsed.instructions, items, parsed.tools)
        raw += sum(math.ceil(len(h.context) / _CHARS_PER_TOKEN) for h in ran)
        room = max(1, max_len - raw) if isinstance(max_len, int) else None
        asked = parsed.max_output_tokens or room or self._estimator.default_completion
        completion = min(asked, room) if room is not None else asked
        await ticket.reserve(self._estimator.estimate_counted(RESPONSES, model, raw, completion))
        # After the reservation, as chat's: a key over its limits costs no recall.
        memory = await self.memory.recall(ticket, payload, engine_body, query, later) if self.memory else None
        return Turn(
            response_id, model, parsed, items, engine_body, metadata, len(fresh), ran, run, checks, memory
        )

    async def _previous(self, ticket: Ticket, parsed: ResponsesRequest) -> list[dict[str, Any]]:
        """The items before the request's own: the previous response's (its input items and output)
        or the conversation's; none for a first turn."""
        if parsed.previous_response_id is not None:
            row = await self._store.get(self._owner(ticket), parsed.previous_response_id)
            if row is None or row.status not in FINAL or row.status == "cancelled":
                raise InvalidRequest(
                    f"Previous response with id '{parsed.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            return history(row.input_items, row.body)
        if isinstance(parsed.conversation, str):
            return await self._conversation_items(ticket, parsed.conversation)
        return []

    async def _keep(self, ticket: Ticket, turn: Turn, response: dict[str, Any]) -> None:
        """Store the response (unless `store: false`)."""
        if turn.parsed.store is False:
            return
        row = row_of(ticket, turn, response, status=str(response.get("status", "completed")))
        if self.redactor is not None:
            row = await self.redactor.stored_row(row, "input_items", "body")
        await self._store.add(row)

    def _finisher(
        self, ticket: Ticket, turn: Turn, answered: list[dict[str, Any]]
    ) -> Callable[[dict[str, Any]], Coroutine[Any, Any, None]]:
        async def finish(response: dict[str, Any]) -> None:
            answered.append(response)
            await self._keep(ticket, turn, response)
            await self._append(ticket, turn, response)

        return finish

    async def _conversation_items(self, ticket: Ticket, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's items, oldest first (the 404 of an id the tenant has not)."""
        if self._conversations is None:
            raise InvalidRequest("Conversations are not served here.", param="conversation")
        return await self._conversations.items_for_input(self._owner(ticket), conversation_id)

    async def _append(self, ticket: Ticket, turn: Turn, response: dict[str, Any]) -> None:
        """Add the turn's input and output items to its conversation, as OpenAI does once the
        response is done (see `conversation_turn`)."""
        if self._conversations is not None and isinstance(turn.parsed.conversation, str):
            await conversation_turn(
                self._conversations,
                self._owner(ticket),
                turn.parsed.conversation,
                turn.fresh,
                response,
                end_user=turn.parsed.user,
            )

    # The stored responses ------------------------------------------------------------------------

    async def retrieve(self, request: Request, response_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ONE) as ticket:
            params = validate(RetrieveParams, dict(request.query_params))
            row = await self._find(ticket, response_id)
            if not params.stream:
                return _done(ticket, row.body)
            if not row.background:
                raise InvalidRequest(
                    "Only background responses can be streamed again; this one was not created with "
                    "`background: true`.",
                    param="stream",
                )
            ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
            after = -1 if params.starting_after is None else params.starting_after
            return StoredEventsStream(
                self._store, row.id, after, poll_s=self._poll_s, headers=ticket.limit_headers
            )

    async def cancel(self, request: Request, response_id: str) -> Response:
        async with self._admission.enter(request, "POST " + ONE + "/cancel") as ticket:
            row = await self._find(ticket, response_id)
            if not row.background:
                raise InvalidRequest(
                    "Only responses created with `background: true` can be cancelled.", param="response_id"
                )
            body = await self._background.cancel(row, self._owner(ticket))
            return _done(ticket, body)

    async def delete(self, request: Request, response_id: str) -> Response:
        async with self._admission.enter(request, "DELETE " + ONE) as ticket:
            row = await self._find(ticket, response_id)
            if row.background and row.status not in FINAL:
                await self._background.cancel(row, self._owner(ticket))
            if not await self._store.delete(self._owner(ticket), response_id):
                raise _not_found(response_id)
            return _done(ticket, {"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: Request, response_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ONE + "/input_items") as ticket:
            params = validate(InputItemsParams, dict(request.query_params))
            row = await self._find(ticket, response_id)
            items = list(row.input_items)
            if params.order == "desc":
                items.reverse()
            if params.after is not None:
                ids = [item.get("id") for item in items]
                items = items[ids.index(params.after) + 1 :] if params.after in ids else []
            page = items[: params.limit]
            return _done(
                ticket,
                {
                    "object": "list",
                    "data": page,
                    "first_id": page[0].get("id") if page else None,
                    "last_id": page[-1].get("id") if page else None,
                    "has_more": len(items) > params.limit,
                },
            )

    async def _find(self, ticket: Ticket, response_id: str) -> ResponseRow:
        await ticket.reserve(_NOTHING)
        row = await self._store.get(self._owner(ticket), response_id)
        if row is None:
            raise _not_found(response_id)
        ticket.tab.model = row.model
        return row

    @staticmethod
    def _owner(ticket: Ticket) -> Owner:
        principal = ticket.principal
        return Owner(principal.tenant_id, principal.key_id)


def row_of(
    ticket: Ticket, turn: Turn, response: dict[str, Any], *, status: str, job_id: str | None = None
) -> ResponseRow:
    principal = ticket.principal
    return ResponseRow(
        id=turn.response_id,
        tenant_id=principal.tenant_id,
        created_by=principal.key_id,
        end_user=turn.parsed.user,
        created_at=datetime.now(UTC).replace(tzinfo=None),
        metadata=turn.metadata,
        model=turn.model,
        status=status,
        background=bool(turn.parsed.background),
        previous_response_id=turn.parsed.previous_response_id,
        job_id=job_id,
        input_items=turn.items,
        body=response,
    )


def _prompt_tokens(instructions: str | None, items: list[dict[str, Any]], tools: Any) -> int:
    """The prompt's tokens, estimated before the engine counts them: four characters to a token of
    the items' and tools' JSON, a few per item."""
    chars = len(instructions or "") + len(orjson.dumps(items)) + (len(orjson.dumps(tools)) if tools else 0)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _PER_ITEM * (len(items) + 1)


def _json(ticket: Ticket, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)


def _done(ticket: Ticket, body: dict[str, Any]) -> Response:
    ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
    return _json(ticket, body)


def _not_found(response_id: str) -> NotFound:
    # The same answer for an id that never existed and for another tenant's: nothing confirms it.
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")
