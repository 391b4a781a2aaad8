"""A Responses create whose tools the gateway runs itself (remote MCP, mcp_tools.py): the tool loop
run against the engine's JSON answers, and the answer given as JSON or as OpenAI's events.

Streamed, the events are the gateway's own, as OpenAI names them: `response.created` and
`response.in_progress` first; each MCP item as it is made (`response.output_item.added`,
`response.mcp_list_tools.in_progress/completed`, `response.mcp_call.in_progress`,
`response.mcp_call_arguments.delta/done`, `response.mcp_call.completed` or `.failed`,
`response.output_item.done`); then the model's last answer (a message's text as one
`response.output_text.delta`: the loop reads the engine's answers whole, because the gateway must
see a turn's tool calls before it can run them) and `response.completed` (or `response.incomplete`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response
from starlette.types import Send

from gateway.admission import Outcome, Ticket
from gateway.errors import APIError, InvalidRequest
from gateway.http.disconnect import unless_disconnected
from gateway.http.sse import SSE_HEADERS
from gateway.http.streaming import RawStream, send_chunk
from gateway.services.mcp_tools import Engine, McpRun, McpTools
from gateway.services.responses_background import PATH as RESPONSES
from gateway.services.responses_background import responses_plan
from gateway.services.responses_items import queued
from gateway.services.responses_stream import ending_event, error_event, frame, usage_of
from gateway.services.upstream_call import chose, upstream_headers
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.timeouts import Deadline

if TYPE_CHECKING:
    from gateway.services.responses_turn import Turn

Finish = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


class ToolEventsStream(RawStream):
    """The loop's events (see the module's words); `on_final` is given the final response."""

    def __init__(
        self,
        turn: Turn,
        run: McpRun,
        tools: McpTools,
        engine: Engine,
        *,
        headers: Mapping[str, str] | None,
        on_close: Callable[[Outcome], None],
    ) -> None:
        super().__init__(SSE_HEADERS, headers, on_close)
        self._turn, self._run, self._tools, self._engine = turn, run, tools, engine
        self._seq = 0
        self._index = 0
        self.final: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return frame(ending_event(event) if "response" in fields else event)

    async def pump(self, send: Send) -> Outcome:
        turn = self._turn
        start = queued(
            turn.response_id, turn.model, turn.parsed.model_dump(), int(time.time()), turn.metadata
        )
        start = turn.show({**start, **self._run.shown, "status": "in_progress", "background": False})
        await send_chunk(send, self._event("response.created", response=start))
        await send_chunk(send, self._event("response.in_progress", response=start))
        for item in self._run.added:
            await send_chunk(send, self._item(item))

        async def on_item(item: dict[str, Any]) -> None:
            await send_chunk(send, self._item(item))

        try:
            answer = await self._tools.run(self._run, turn.engine_body, self._engine, on_item)
        except APIError as error:
            await send_chunk(send, error_event(error), more=False)
            return Outcome.FAILED
        final = await turn.checked(turn.show(answer))
        for item in (final.get("output") or [])[self._index :]:
            await send_chunk(send, self._item(item))
        self.final = final
        await send_chunk(send, self._event("response.completed", response=final), more=False)
        return Outcome.COMPLETED

    def _item(self, item: dict[str, Any]) -> bytes:
        """One output item's events, in OpenAI's order."""
        at, kind = self._index, str(item.get("type"))
        self._index += 1
        ref = {"item_id": item.get("id"), "output_index": at}
        events = [self._event("response.output_item.added", output_index=at, item=_opened(item))]
        if kind == "mcp_list_tools":
            events += [
                self._event("response.mcp_list_tools.in_progress", **ref),
                self._event("response.mcp_list_tools.completed", **ref),
            ]
        elif kind == "mcp_call":
            arguments = item.get("arguments") or ""
            ended = "response.mcp_call.failed" if item.get("error") else "response.mcp_call.completed"
            events += [
                self._event("response.mcp_call.in_progress", **ref),
                self._event("response.mcp_call_arguments.delta", **ref, delta=arguments),
                self._event("response.mcp_call_arguments.done", **ref, arguments=arguments),
                self._event(ended, **ref),
            ]
        elif kind == "message":
            events += self._message(item, ref)
        events.append(self._event("response.output_item.done", output_index=at, item=item))
        return b"".join(events)

    def _message(self, item: dict[str, Any], ref: dict[str, Any]) -> list[bytes]:
        events = []
        for n, part in enumerate(item.get("content") or []):
            where = {**ref, "content_index": n}
            text = part.get("text") or "" if isinstance(part, dict) else ""
            events += [
                self._event(
                    "response.content_part.added", **where, part={**part, "text": "", "annotations": []}
                ),
                self._event("response.output_text.delta", **where, delta=text, logprobs=[]),
                self._event("response.output_text.done", **where, text=text, logprobs=[]),
                self._event("response.content_part.done", **where, part=part),
            ]
        return events


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """An item as `response.output_item.added` shows it: still in progress, no output yet."""
    kind = item.get("type")
    if kind == "message":
        return {**item, "status": "in_progress", "content": []}
    if kind == "mcp_call":
        return {**item, "status": "in_progress", "arguments": "", "output": None, "error": None}
    if kind == "mcp_list_tools":
        return {**item, "tools": []}
    return item


async def tool_answer(
    ticket: Ticket,
    turn: Turn,
    run: McpRun,
    tools: McpTools,
    dispatcher: Dispatcher,
    finish: Finish,
    spawn: Callable[[Coroutine[Any, Any, Any]], None],
) -> Response:
    """The create's answer: the loop against the model's plan (Responses-serving upstreams only),
    the response stored and appended by `finish` (after the stream, off the request path)."""
    if turn.parsed.background:
        raise InvalidRequest("MCP tools are not run in background responses yet.", param="background")
    plan = responses_plan(dispatcher, turn.model)
    headers = upstream_headers(ticket)
    deadline = Deadline(plan[0].timeouts.total_s)

    async def engine(body: dict[str, Any]) -> dict[str, Any]:
        with ticket.stage("tool_loop.model"):
            answer, member, target = await dispatcher.complete(
                RESPONSES, orjson.dumps(body), headers, plan, deadline
            )
        chose(ticket, member.name, target.model)
        parsed = orjson.loads(answer)
        return parsed if isinstance(parsed, dict) else {}

    if not turn.parsed.stream:
        answer = await unless_disconnected(ticket.request.receive, tools.run(run, turn.engine_body, engine))
        response = await turn.checked(turn.show(answer))
        await finish(response)
        ticket.settle(Outcome.COMPLETED, usage=usage_of(response))
        return Response(orjson.dumps(response), media_type="application/json", headers=ticket.limit_headers)
    ticket.defer()

    def closed(outcome: Outcome) -> None:
        ticket.settle(outcome, usage=usage_of(stream.final))
        if stream.final is not None and outcome is Outcome.COMPLETED:
            spawn(finish(stream.final))

    stream = ToolEventsStream(turn, run, tools, engine, headers=ticket.limit_headers, on_close=closed)
    return stream
