"""The memory API in mem0's platform shape (docs/memory.md): what mem0's own `MemoryClient` calls,
at the paths it calls them (v1, v2 and v3 alike), with the answers it reads.

Each endpoint is admitted like chat (authenticated, limited: one request against the key's and the
tenant's limits; settled in the ledger, traced). The embeddings and extraction a request needs are
requests of their own, made by `MemoryCore` as the same key: their tokens are limited and in the
ledger under /v1/embeddings and /v1/chat/completions. A memory belongs to its tenant: another
tenant's id is the 404 of an id that does not exist, and a search only ever sees the scope's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket, validate
from gateway.errors import InvalidRequest, NotFound
from gateway.limits import Estimate
from gateway.protocol.common import InvalidParam
from gateway.protocol.memory import (
    ENTITIES,
    MAX_MEMORY_CHARS,
    MemoryAdd,
    MemoryList,
    MemorySearch,
    MemoryUpdate,
    Scoped,
    scope_of,
)
from gateway.services.memory_core import Caller, MemoryCore, text_of
from gateway.services.memory_graph import Related, fact_object
from gateway.store.memories import Event, Memory, Scope
from gateway.store.memory_events import Expiry
from gateway.store.owned import Owner

_NOTHING = Estimate(0, 0, 0)
_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


class MemoryService:
    def __init__(self, admission: Admission, core: MemoryCore) -> None:
        self._admission = admission
        self.core = core

    async def ping(self, request: Request) -> Response:
        """mem0's key check on construction: the key's tenant stands for its org and project."""
        async with self._admission.enter(request, "GET /v1/ping/") as ticket:
            caller = await _admit(ticket)
            tenant = caller.owner.tenant_id or "default"
            body = {"status": "ok", "org_id": tenant, "project_id": tenant, "user_email": None}
            return _done(ticket, body)

    async def add(self, request: Request, endpoint: str) -> Response:
        async with self._admission.enter(request, endpoint) as ticket:
            caller = await _admit(ticket)
            _, _, body = await ticket.read_json(MemoryAdd)
            scope = _scope(body)
            if scope.empty:
                raise InvalidRequest(
                    "One of user_id, agent_id, app_id or run_id is required (at the top level or in "
                    "filters).",
                    param="filters",
                    code="missing_entity",
                )
            messages = _messages(body)
            metadata = dict(body.metadata or {})
            if body.infer:
                facts = await self.core.extract(caller, messages)
                texts = [(fact, metadata) for fact in facts]
            else:
                texts = [
                    (text_of(m)[:MAX_MEMORY_CHARS], {**metadata, "role": m.get("role", "user")})
                    for m in messages
                    if m.get("role") != "system" and text_of(m)
                ]
            expires_at = _expiry(body.expiration_date)
            done = await self.core.add(
                caller, scope, texts, dedupe=body.infer, source=messages, expires_at=expires_at
            )
            results = [{"id": m.id, "memory": m.memory, "event": event} for event, m in done]
            return _done(ticket, {"results": results})

    async def search(self, request: Request, endpoint: str) -> Response:
        async with self._admission.enter(request, endpoint) as ticket:
            caller = await _admit(ticket)
            _, _, body = await ticket.read_json(MemorySearch)
            scope = _scope(body, extra=body.metadata)
            found = await self.core.search(
                caller, scope, body.query, body.limit or body.top_k, threshold=body.threshold
            )
            results = [{**memory_object(f.memory), "score": f.score, "source": "vector"} for f in found]
            graph = self.core.graph
            wanted = (
                body.enable_graph
                if body.enable_graph is not None
                else bool(graph and graph.options.search_default)
            )
            if not wanted or graph is None:
                return _done(ticket, {"results": results})
            related = await self.core.related(caller, scope, body.query)
            return _done(ticket, merged(results, related, body.limit or body.top_k))

    async def list(self, request: Request, endpoint: str) -> Response:
        """get_all: POST /v2|v3/memories/ with filters in the body, or GET /v1/memories/ with the
        entity ids in the query; `page` and `page_size` in the query."""
        async with self._admission.enter(request, endpoint) as ticket:
            caller = await _admit(ticket)
            query = dict(request.query_params)
            if request.method == "POST":
                _, payload, _ = await ticket.read_json(Scoped)
                payload = {**payload, **query}
            else:
                payload = query
            body = validate(MemoryList, payload)
            memories = await self.core.store.in_scope(caller.owner, _scope(body))
            memories.reverse()  # newest first, as mem0 lists them
            start = (body.page - 1) * body.page_size
            page = memories[start : start + body.page_size]
            more = start + body.page_size < len(memories)
            answer = {
                "count": len(memories),
                "next": _page_url(request, body.page + 1, body.page_size) if more else None,
                "previous": _page_url(request, body.page - 1, body.page_size) if body.page > 1 else None,
                "results": [memory_object(m) for m in page],
            }
            return _done(ticket, answer)

    async def get(self, request: Request, memory_id: str) -> Response:
        async with self._admission.enter(request, "GET /v1/memories/{id}/") as ticket:
            caller = await _admit(ticket)
            return _done(ticket, memory_object(await self._found(caller.owner, memory_id)))

    async def update(self, request: Request, memory_id: str) -> Response:
        async with self._admission.enter(request, "PUT /v1/memories/{id}/") as ticket:
            caller = await _admit(ticket)
            _, _, body = await ticket.read_json(MemoryUpdate)
            await self._found(caller.owner, memory_id)
            expiry = "expiration_date" in body.model_fields_set
            if body.text is None and body.metadata is None and not expiry:
                current = await self._found(caller.owner, memory_id)
                return _done(ticket, memory_object(current))
            memory = await self.core.update(
                caller,
                memory_id,
                text=body.text,
                metadata=body.metadata,
                expires=Expiry(_expiry(body.expiration_date)) if expiry else None,
            )
            if memory is None:
                raise _not_found(memory_id)
            return _done(ticket, memory_object(memory))

    async def delete(self, request: Request, memory_id: str) -> Response:
        async with self._admission.enter(request, "DELETE /v1/memories/{id}/") as ticket:
            caller = await _admit(ticket)
            memory = await self._found(caller.owner, memory_id)
            await self.core.delete(caller.owner, [memory])
            return _done(ticket, {"message": "Memory deleted successfully!"})

    async def delete_all(self, request: Request) -> Response:
        """Every memory of the scope the query names; a scope is required (no tenant-wide wipe)."""
        async with self._admission.enter(request, "DELETE /v1/memories/") as ticket:
            caller = await _admit(ticket)
            query = {k: v for k, v in request.query_params.items() if k in ENTITIES}
            scope = _scope(validate(Scoped, query))
            if scope.empty:
                raise InvalidRequest(
                    "Name the memories to delete: one of user_id, agent_id, app_id or run_id.",
                    param="user_id",
                    code="missing_entity",
                )
            memories = await self.core.store.in_scope(caller.owner, scope)
            await self.core.delete(caller.owner, memories)
            return _done(ticket, {"message": "Memories deleted successfully!"})

    async def history(self, request: Request, memory_id: str) -> Response:
        async with self._admission.enter(request, "GET /v1/memories/{id}/history/") as ticket:
            caller = await _admit(ticket)
            events = await self.core.store.history(caller.owner, memory_id)
            if not events:
                raise _not_found(memory_id)
            return _done_list(ticket, [history_object(e) for e in events])

    async def _found(self, owner: Owner, memory_id: str) -> Memory:
        memory = await self.core.store.get(owner, memory_id)
        if memory is None:
            raise _not_found(memory_id)
        return memory


def merged(results: list[dict[str, Any]], related: list[Related], limit: int) -> dict[str, Any]:
    """Vector results first (`source` vector, or both when the graph reached them too), then the
    memories only the graph reached (`source` graph, scored 1 / (1 + hops)), at most `limit` of
    them; and every relation found, in mem0's `relations`."""
    by_id = {r["id"]: r for r in results}
    added = 0
    for found in related:
        if found.memory.id in by_id:
            by_id[found.memory.id]["source"] = "both"
        elif added < limit:
            results.append({**memory_object(found.memory), "score": found.score, "source": "graph"})
            added += 1
    relations = [fact_object(f) for found in related for f in found.facts]
    return {"results": results, "relations": relations}


def memory_object(memory: Memory) -> dict[str, Any]:
    """A memory as mem0's platform shows it."""
    return {
        "id": memory.id,
        "memory": memory.memory,
        **memory.scope.ids(),
        "hash": memory.hash,
        "metadata": memory.metadata or None,
        "categories": memory.categories,
        "immutable": False,
        "expiration_date": _iso(memory.expires_at) if memory.expires_at else None,
        "created_at": _iso(memory.created_at),
        "updated_at": _iso(memory.updated_at),
    }


def history_object(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "memory_id": event.memory_id,
        "input": event.input or [],
        "old_memory": event.old_memory,
        "new_memory": event.new_memory,
        "user_id": event.end_user,
        "event": event.event,
        "metadata": event.metadata or None,
        "categories": [],
        "created_at": _iso(event.created_at),
        "updated_at": _iso(event.created_at),
    }


async def _admit(ticket: Ticket) -> Caller:
    """Count the request against the caller's limits; the caller as owner."""
    await ticket.reserve(_NOTHING)
    principal = ticket.principal
    return Caller(Owner(principal.tenant_id, principal.key_id), ticket.tab.request_id, principal)


def _scope(body: Scoped, extra: dict[str, Any] | None = None) -> Scope:
    try:
        found = scope_of(body, extra_metadata=extra)
    except InvalidParam as exc:
        raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None
    return Scope(**found)


def _expiry(value: str | None) -> datetime | None:
    """mem0's `expiration_date` (an ISO date: the end of that day, or an ISO datetime) as naive UTC."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            "expiration_date must be an ISO 8601 date or datetime.", param="expiration_date"
        ) from None
    if len(value) == 10:  # a date: the memory lasts through that day
        at = at.replace(hour=23, minute=59, second=59)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _messages(body: MemoryAdd) -> list[dict[str, Any]]:
    if isinstance(body.messages, str):
        return [{"role": "user", "content": body.messages}]
    return [m.model_dump(exclude_none=True) for m in body.messages]


def _page_url(request: Request, page: int, size: int) -> str:
    return str(request.url.include_query_params(page=page, page_size=size))


def _iso(at: datetime) -> str:
    return at.replace(tzinfo=UTC).isoformat()


def _done(ticket: Ticket, body: dict[str, Any]) -> Response:
    ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
    return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)


def _done_list(ticket: Ticket, body: list[dict[str, Any]]) -> Response:
    ticket.settle(Outcome.COMPLETED, usage=_NO_TOKENS)
    return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)


def _not_found(memory_id: str) -> NotFound:
    # The same answer for an id that never existed and for another tenant's: nothing confirms it.
    return NotFound(f"Memory with id '{memory_id}' not found.", param="memory_id", code="not_found")
