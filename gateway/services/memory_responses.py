"""Memory in the Responses API (docs/memory.md, "Memory in responses"): the same recall, block and
extraction job as chat's (memory_chat.py), placed where vLLM's /v1/responses renders it.

The block is appended to the request's `instructions` when it has them (vLLM renders `instructions`
as the first system message), else placed as a leading `system` message item, or appended to the
input's own leading system message: one system message either way, first, as chat's block. Not a
`developer` item: vLLM passes the role through to the chat template, and Qwen's (the tiny
checkpoint's, as many others) renders no `developer` turn at all, so the block would be dropped.

Only the engine's body carries the block: the response's stored `input_items` are the items the
client sent, and `instructions` in the response object (which vLLM echoes from what it was sent)
are put back to the request's own, so neither a read-back nor a follow-up (`previous_response_id`,
whose history is the stored items) ever holds an earlier turn's block; each turn recalls its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.responses import Response

from gateway.admission import Ticket
from gateway.http.streaming import after_body
from gateway.services.memory_chat import HEADER, ChatMemory, Later, Placement


class ResponsesMemory:
    """The Responses API's side of memory, over chat's `ChatMemory` (its options, records, job)."""

    def __init__(self, memory: ChatMemory) -> None:
        self.memory = memory

    async def recall(
        self,
        ticket: Ticket,
        payload: dict[str, Any],
        engine_body: dict[str, Any],
        query: str,
        later: Later | None = None,
    ) -> Placement | None:
        """Place the end user's memories most relevant to `query` (the latest user text of the input,
        `file_search.latest_user_text`) in `engine_body` (changed in place), once the request's own
        tokens are reserved (a key over its limits costs no recall, as chat's); None when memory is
        off, no end user is named or nothing relevant is remembered."""
        user = self.memory.end_user(ticket, payload)
        if user is None or not isinstance(engine_body.get("input"), list):
            return None
        placement = await self.memory.place(ticket, user, query, later)
        if placement is not None:
            place_block(engine_body, placement.block)
            # Its tokens on top of the request's reservation; the header on whatever the answer is.
            await ticket.reserve_more(placement.tokens)
            ticket.headers[HEADER] = placement.header
        return placement

    async def start(self, records: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
        """Start the recall records handed to `later` (the panel's), each as chat's."""
        for record in records:
            await self.memory.start(record)

    def after_answer(
        self,
        ticket: Ticket,
        response: Response,
        records: list[Callable[[], Coroutine[Any, Any, None]]],
        placement: Placement | None,
        fresh: list[dict[str, Any]],
        answered: list[dict[str, Any]],
    ) -> None:
        """Once the answer's body is sent (never before its first byte, as chat's): the recall
        records written, and with `placement`, the turn queued for extraction. The final response is
        the last of `answered` (a JSON answer's, or a relayed stream's once it closed), else the
        tool loop's stream's own `final`."""
        after_body(response, functools.partial(self.start, records))
        if placement is None:
            return
        principal = ticket.principal

        async def remember() -> None:
            final = answered[-1] if answered else getattr(response, "final", None)
            await self.remember(
                principal.tenant_id, principal.key_id, placement.user, fresh, final, ticket.tab.request_id
            )

        after_body(response, remember)

    async def remember(
        self,
        tenant_id: str | None,
        key_id: str | None,
        user: str,
        fresh: list[dict[str, Any]],
        response: dict[str, Any] | None,
        request_id: str,
    ) -> None:
        """Queue the turn for extraction: the request's own message items and the answer's, when the
        response answered (completed, or cut by `max_output_tokens`)."""
        if response is None or response.get("status") not in ("completed", "incomplete"):
            return
        await self.memory.queue(tenant_id, key_id, user, turn_messages(fresh, response), request_id)


def place_block(engine_body: dict[str, Any], block: str) -> None:
    """The block in what vLLM renders as the first system message (see the module's words)."""
    instructions = engine_body.get("instructions")
    if isinstance(instructions, str) and instructions.strip():
        engine_body["instructions"] = f"{instructions}\n\n{block}"
        return
    items = engine_body["input"]
    first = items[0] if items else None
    if (
        isinstance(first, dict)
        and first.get("type", "message") == "message"
        and first.get("role") == "system"
    ):
        content = first.get("content")
        if isinstance(content, str):
            joined = f"{content}\n\n{block}" if content.strip() else block
            items[0] = {**first, "content": joined}
            return
        if isinstance(content, list) and all(_text_part(part) for part in content):
            items[0] = {**first, "content": [*content, {"type": "input_text", "text": block}]}
            return
    items.insert(0, {"type": "message", "role": "system", "content": [{"type": "input_text", "text": block}]})


def _text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "input_text"


def turn_messages(fresh: list[dict[str, Any]], response: dict[str, Any]) -> list[dict[str, Any]]:
    """The turn's message items: the request's own input, then the answer's output messages."""
    output = response.get("output")
    answered = output if isinstance(output, list) else []
    return [
        item
        for item in (*fresh, *answered)
        if isinstance(item, dict) and item.get("type", "message") == "message"
    ]


def shown_memory(
    body: dict[str, Any], placement: Placement | None, instructions: str | None
) -> dict[str, Any]:
    """The response object as the client sees it with memory placed: its own `instructions` back
    (vLLM echoes the ones it was sent) and the memories used in `usage.tantra_memory` (once the
    engine has counted the usage)."""
    if placement is None:
        return body
    usage = body.get("usage")
    out = {**body, "instructions": instructions}
    if isinstance(usage, dict):
        out["usage"] = {**usage, "tantra_memory": placement.usage()}
    return out


def placement_json(placement: Placement) -> dict[str, Any]:
    """A placement as a background response's job carries it (its payload is JSON)."""
    return {
        "user": placement.user,
        "used": [list(pair) for pair in placement.used],
        "tokens": placement.tokens,
    }


def placement_of(raw: Any) -> Placement | None:
    """The placement `placement_json` wrote (None: none was placed); the block itself is in the
    job's engine body already."""
    if not isinstance(raw, dict):
        return None
    used = [(str(memory_id), float(score)) for memory_id, score in raw.get("used") or []]
    return Placement(str(raw["user"]), used, "", int(raw.get("tokens") or 0))
