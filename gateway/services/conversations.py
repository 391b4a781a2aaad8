"""OpenAI's Conversations API: create, retrieve, update (metadata) and delete a conversation; add,
list, retrieve and delete its items. And the two calls the Responses API makes for a response given
`conversation`: `items_for_input` (what it reads) and `append` (what it adds).

Each endpoint is admitted like chat (authenticated, limited: one request against the key's and
tenant's limits, no tokens; settled in the ledger, traced). A conversation belongs to its tenant
(as OpenAI's belong to the project): any key of the tenant may use it, another tenant's key gets
the 404 of an id that does not exist. Writes go to the store in the request (unlike stored
completions, which are batched): the client uses the conversation it just made at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket, validate
from gateway.errors import InvalidRequest, NotFound
from gateway.limits import Estimate
from gateway.protocol.common import InvalidParam
from gateway.protocol.conversations import (
    ConversationCreate,
    ConversationUpdate,
    ItemListParams,
    ItemsCreate,
    check_include,
    duplicate_id,
    new_id,
    normalize_items,
)
from gateway.services.pii import Redactor
from gateway.store import utcnow
from gateway.store.conversations import (
    ConversationNotFound,
    ConversationRow,
    ConversationStore,
    DuplicateItem,
)
from gateway.store.owned import Owner

ONE = "/v1/conversations/{id}"
ITEMS = "/v1/conversations/{id}/items"
ITEM = "/v1/conversations/{id}/items/{item_id}"
_NOTHING = Estimate(0, 0, 0)
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


class Conversations:
    def __init__(self, admission: Admission, store: ConversationStore) -> None:
        self._admission = admission
        self._store = store
        # PII redaction of the items stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None

    # For the Responses API ------------------------------------------------------------------------

    async def items_for_input(self, owner: Owner, conversation_id: str) -> list[dict[str, Any]]:
        """Every item of the conversation, oldest first, as Responses input items (each with its
        `id`, `type` and `status`); the 404 of this API for an id the owner has not."""
        try:
            return (await self._store.items(owner, conversation_id)).items
        except ConversationNotFound:
            raise _not_found(conversation_id, param="conversation") from None

    async def append(
        self, owner: Owner, conversation_id: str, items: Sequence[Any], *, end_user: str | None = None
    ) -> list[dict[str, Any]]:
        """Add `items` (Responses input or output items, as a client or the model wrote them) after
        the conversation's last, all in one transaction; the items as stored (ids given to those
        without). A 404 for an id the owner has not, a 400 for an item OpenAI would refuse or an
        id the conversation already holds. No limit on the count (a response's output may be long)."""
        try:
            normalized = normalize_items(list(items), max_items=None)
        except InvalidParam as exc:
            raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None
        await self._append(owner, conversation_id, normalized, end_user=end_user, param="items")
        return normalized

    # Endpoints ------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async with self._admission.enter(request, "POST /v1/conversations") as ticket:
            owner = await _admit(ticket)
            _, _, parsed = await ticket.read_json(ConversationCreate)
            row = await self._store.create(
                owner,
                new_id("conv_"),
                at=utcnow(),
                metadata=parsed.metadata,
                items=await self._redacted(owner, parsed.items),
                end_user=parsed.safety_identifier,
            )
            return _done(ticket, conversation_object(row))

    async def retrieve(self, request: Request, conversation_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ONE) as ticket:
            owner = await _admit(ticket)
            row = await _found(self._store.get(owner, conversation_id), conversation_id)
            return _done(ticket, conversation_object(row))

    async def update(self, request: Request, conversation_id: str) -> Response:
        async with self._admission.enter(request, "POST " + ONE) as ticket:
            owner = await _admit(ticket)
            _, _, parsed = await ticket.read_json(ConversationUpdate)
            row = await _found(
                self._store.update_metadata(owner, conversation_id, parsed.metadata), conversation_id
            )
            return _done(ticket, conversation_object(row))

    async def delete(self, request: Request, conversation_id: str) -> Response:
        async with self._admission.enter(request, "DELETE " + ONE) as ticket:
            owner = await _admit(ticket)
            await _found(self._store.delete(owner, conversation_id), conversation_id)
            return _done(ticket, {"id": conversation_id, "object": "conversation.deleted", "deleted": True})

    async def add_items(self, request: Request, conversation_id: str) -> Response:
        async with self._admission.enter(request, "POST " + ITEMS) as ticket:
            owner = await _admit(ticket)
            _include(request)
            _, _, parsed = await ticket.read_json(ItemsCreate)
            await self._append(owner, conversation_id, parsed.items, end_user=None, param="items")
            return _done(ticket, _list(parsed.items, has_more=False))

    async def list_items(self, request: Request, conversation_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ITEMS) as ticket:
            owner = await _admit(ticket)
            _include(request)
            query = {k: v for k, v in request.query_params.items() if not k.startswith("include")}
            params = validate(ItemListParams, query)
            page = await _found(
                self._store.items(
                    owner, conversation_id, after=params.after, limit=params.limit, order=params.order
                ),
                conversation_id,
            )
            return _done(ticket, _list(page.items, has_more=page.has_more))

    async def retrieve_item(self, request: Request, conversation_id: str, item_id: str) -> Response:
        async with self._admission.enter(request, "GET " + ITEM) as ticket:
            owner = await _admit(ticket)
            _include(request)
            item = await _found(self._store.item(owner, conversation_id, item_id), conversation_id)
            if item is None:
                raise _item_not_found(item_id)
            return _done(ticket, item)

    async def delete_item(self, request: Request, conversation_id: str, item_id: str) -> Response:
        async with self._admission.enter(request, "DELETE " + ITEM) as ticket:
            owner = await _admit(ticket)
            row = await _found(self._store.delete_item(owner, conversation_id, item_id), conversation_id)
            if row is None:
                raise _item_not_found(item_id)
            return _done(ticket, conversation_object(row))

    async def _redacted(self, owner: Owner, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items as the tenant's PII policy lets them be stored."""
        return items if self.redactor is None else await self.redactor.stored(owner.tenant_id, items)

    async def _append(
        self,
        owner: Owner,
        conversation_id: str,
        items: list[dict[str, Any]],
        *,
        end_user: str | None,
        param: str,
    ) -> None:
        items = await self._redacted(owner, items)
        try:
            await self._store.append(owner, conversation_id, items, at=utcnow(), end_user=end_user)
        except ConversationNotFound:
            raise _not_found(conversation_id) from None
        except DuplicateItem as exc:
            problem = duplicate_id(f"{param}[{exc.index}].id", exc.item_id)
            raise InvalidRequest(problem.message, param=problem.param, code=problem.code) from None


def conversation_object(row: ConversationRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "conversation",
        "created_at": int(row.created_at.replace(tzinfo=UTC).timestamp()),
        "metadata": row.metadata,
    }


async def _admit(ticket: Ticket) -> Owner:
    """Count the request against the caller's limits; the caller as owner."""
    await ticket.reserve(_NOTHING)
    principal = ticket.principal
    return Owner(principal.tenant_id, principal.key_id)


async def _found(work: Any, conversation_id: str) -> Any:
    try:
        return await work
    except ConversationNotFound:
        raise _not_found(conversation_id) from None


def _include(request: Request) -> list[str]:
    """`include` (the SDK sends `include[]=...`): accepted, checked against OpenAI's values; every
    item is kept whole, so what they would add is always there."""
    values = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    try:
        return check_include(values)
    except InvalidParam as exc:
        raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None


def _done(ticket: Ticket, body: dict[str, Any]) -> Response:
    ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
    return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)


def _list(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _not_found(conversation_id: str, param: str | None = None) -> NotFound:
    # The same answer for an id that never existed and for another tenant's: nothing confirms it.
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param, code="not_found")


def _item_not_found(item_id: str) -> NotFound:
    return NotFound(f"Item with id '{item_id}' not found.", param=None, code="not_found")
