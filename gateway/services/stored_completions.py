"""Stored chat completions: what `store: true` keeps (`begin`, from the chat endpoint), and the
endpoints that read it: list, retrieve, update metadata, delete, and the request's messages.

Each endpoint is admitted like chat (authenticated, limited: one request against the key's and
tenant's limits, no tokens; settled in the ledger, traced). A completion belongs to its tenant (as
OpenAI's belong to the project): any key of the tenant may read, update or delete it, another
tenant's key gets the 404 of an id that does not exist.

Writes are batched off the request path (`BatchedWriter`, as the usage ledger's): a completion is
in the database within the flush interval of its answer, and a read on the replica that served it
writes that replica's waiting ones first, so a client sees its own completions at once there;
another replica sees them within the interval (OpenAI, too, lists them after a short delay).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket, validate
from gateway.errors import NotFound
from gateway.limits import Estimate
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.stored import ChatCompletionListParams, ListParams, MetadataUpdate
from gateway.services.pii import Redactor
from gateway.services.stored_capture import Capture
from gateway.store.batched import BatchedWriter
from gateway.store.completions import CompletionStore, StoredCompletionRow
from gateway.store.owned import Owner, PageQuery

LIST = "GET /v1/chat/completions"
ONE = "/v1/chat/completions/{id}"
MESSAGES = "GET /v1/chat/completions/{id}/messages"
_NOTHING = Estimate(0, 0, 0)
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


class StoredCompletions:
    def __init__(
        self,
        admission: Admission,
        store: CompletionStore,
        writer: BatchedWriter[StoredCompletionRow],
        *,
        enabled: bool = True,
    ) -> None:
        self._admission = admission
        self._store = store
        self._writer = writer
        # Off: `store: true` keeps nothing (as vLLM ignores it); the endpoints still answer.
        self.enabled = enabled
        # PII redaction of what is stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None

    async def close(self) -> None:
        """Write what is waiting (at shutdown)."""
        await self._writer.close()

    # Capture (the chat endpoint) -----------------------------------------------------------------

    def begin(self, ticket: Ticket, payload: dict[str, Any], parsed: Any) -> Capture | None:
        """A capture for a chat request with `store: true` (None otherwise: nothing is read)."""
        if not self.enabled or not isinstance(parsed, ChatCompletionRequest) or parsed.store is not True:
            return None
        principal = ticket.principal
        return Capture(
            request_id=ticket.tab.request_id,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            payload=payload,
            metadata=dict(parsed.metadata or {}),
        )

    async def write(self, rows: Sequence[StoredCompletionRow]) -> None:
        """The writer's batch to the store, its PII redacted first under each row's tenant policy
        (off the request path: the client's answer is never held for it)."""
        if self.redactor is not None:
            rows = [await self.redactor.stored_row(row, "messages", "choices") for row in rows]
        await self._store.add(rows)

    def keep(self, row: StoredCompletionRow | None) -> None:
        """Hand `row` to the writer (started by the first one, on the running loop)."""
        if row is not None:
            self._writer.start()
            self._writer.record(row)

    # Endpoints -----------------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        async with self._admission.enter(request, LIST) as ticket:
            owner = await self._admit(ticket)
            params = validate(ChatCompletionListParams, _query(request))
            page = await self._store.list(
                owner,
                PageQuery(params.after, params.limit, params.order),
                model=params.model,
                metadata=_metadata_filter(request),
            )
            data = [completion_object(row) for row in page.rows]
            return self._done(ticket, _list(data, page.has_more))

    async def retrieve(self, request: Request, completion_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ONE) as ticket:
            row = await self._find(ticket, completion_id)
            return self._done(ticket, completion_object(row))

    async def update(self, request: Request, completion_id: str) -> Response:
        async with self._admission.enter(request, "POST " + ONE) as ticket:
            owner = await self._admit(ticket)
            _, _, parsed = await ticket.read_json(MetadataUpdate)
            row = await self._store.update_metadata(owner, completion_id, parsed.metadata)
            if row is None:
                raise _not_found(completion_id)
            ticket.tab.model = row.model
            return self._done(ticket, completion_object(row))

    async def delete(self, request: Request, completion_id: str) -> Response:
        async with self._admission.enter(request, "DELETE " + ONE) as ticket:
            owner = await self._admit(ticket)
            if not await self._store.delete(owner, completion_id):
                raise _not_found(completion_id)
            deleted = {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}
            return self._done(ticket, deleted)

    async def messages(self, request: Request, completion_id: str) -> Response:
        async with self._admission.enter(request, MESSAGES) as ticket:
            params = validate(ListParams, _query(request))
            row = await self._find(ticket, completion_id)
            items = [_message(completion_id, index, message) for index, message in enumerate(row.messages)]
            if params.order == "desc":
                items.reverse()
            if params.after is not None:
                ids = [item["id"] for item in items]
                items = items[ids.index(params.after) + 1 :] if params.after in ids else []
            return self._done(ticket, _list(items[: params.limit], len(items) > params.limit))

    async def _admit(self, ticket: Ticket) -> Owner:
        """Count the request against the caller's limits; write this replica's waiting completions
        (its own writes are then read back); the caller as owner."""
        await ticket.reserve(_NOTHING)
        await self._writer.flush()
        principal = ticket.principal
        return Owner(principal.tenant_id, principal.key_id)

    async def _find(self, ticket: Ticket, completion_id: str) -> StoredCompletionRow:
        owner = await self._admit(ticket)
        row = await self._store.get(owner, completion_id)
        if row is None:
            raise _not_found(completion_id)
        ticket.tab.model = row.model
        return row

    @staticmethod
    def _done(ticket: Ticket, body: dict[str, Any]) -> Response:
        ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
        return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)


def completion_object(row: StoredCompletionRow) -> dict[str, Any]:
    """A stored completion as OpenAI shows one: the answer, its metadata, the echoed parameters."""
    return {
        "id": row.id,
        "object": "chat.completion",
        "created": row.created,
        "model": row.model,
        "choices": row.choices,
        "usage": row.usage,
        "metadata": row.metadata,
        "request_id": row.request_id,
        "input_user": row.end_user,
        **row.fields,
    }


def _message(completion_id: str, index: int, message: Any) -> dict[str, Any]:
    """A request message as OpenAI lists it: an id, its fields, and `content_parts` for a message
    whose content was a list of parts (then `content` is their text)."""
    shown = dict(message) if isinstance(message, dict) else {"role": None, "content": message}
    content = shown.get("content")
    parts = None
    if isinstance(content, list):
        parts = content
        texts = [
            part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"
        ]
        content = "".join(text for text in texts if isinstance(text, str)) or None
    return {
        **shown,
        "id": f"{completion_id}-{index}",
        "content": content,
        "name": shown.get("name"),
        "content_parts": parts,
    }


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _query(request: Request) -> dict[str, str]:
    """The list parameters of the query string (the metadata filter is read apart)."""
    return {key: value for key, value in request.query_params.items() if not key.startswith("metadata")}


def _metadata_filter(request: Request) -> dict[str, str]:
    """`metadata[key]=value` pairs (the SDK's encoding of a `metadata` filter): all must match."""
    pairs = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            pairs[key[len("metadata[") : -1]] = value
    return pairs


def _not_found(completion_id: str) -> NotFound:
    # The same answer for an id that never existed and for another tenant's: nothing confirms it.
    return NotFound(
        f"No chat completion found with id '{completion_id}'.", param="completion_id", code="not_found"
    )
