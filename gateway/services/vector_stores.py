"""OpenAI's vector stores API: /v1/vector_stores, their files, file batches and search
(docs/memory.md, "Vector stores and file search"). Ingestion and search are `VectorCore`'s.

Each endpoint is admitted like the Files API's (authenticated, counted against the key's and the
tenant's requests, one ledger row, traced); the embeddings a file or a search needs are requests of
their own as the same key, their tokens limited and in the ledger under /v1/embeddings. A store
belongs to its tenant: another tenant's id is the 404 of an id that does not exist, and the files
attached must be the tenant's own (the Files API's 404 otherwise).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Ticket, validate
from gateway.errors import InvalidRequest
from gateway.protocol.stored import ListParams
from gateway.protocol.vector_stores import (
    ChunkingStrategy,
    FileBatchCreate,
    FileCreate,
    FileUpdate,
    SearchRequest,
    VectorStoreCreate,
    VectorStoreModify,
    auto_chunking,
)
from gateway.services.stored import StoredObjects, answer, no_such, unix
from gateway.services.vector_core import Acting, VectorCore, new_store_file
from gateway.services.vector_objects import expires_at, file_object, no_batch, no_file, no_store, page
from gateway.store import utcnow
from gateway.store.owned import Owner, PageQuery
from gateway.store.vector_stores import (
    CANCELLED,
    IN_PROGRESS,
    FileGone,
    StoredFileBatch,
    StoredVectorStore,
    StoredVectorStoreFile,
)

ROOT = "/v1/vector_stores"
ONE = ROOT + "/{id}"
FILES = ONE + "/files"
BATCHES = ONE + "/file_batches"


class VectorStoresService:
    def __init__(self, objects: StoredObjects, core: VectorCore) -> None:
        self._objects = objects
        self.core = core

    # Stores --------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async with self._objects.enter(request, "POST " + ROOT) as ticket:
            _, _, body = await ticket.read_json(VectorStoreCreate)
            owner, now = _owner(ticket), utcnow()
            row = StoredVectorStore(
                id="vs_" + secrets.token_hex(16),
                tenant_id=owner.tenant_id,
                created_by=owner.key_id,
                end_user=self._objects.owner(ticket).user,
                created_at=now,
                tags=dict(body.metadata or {}),
                name=body.name or "",
                description=body.description,
                expires_after_days=body.expires_after.days if body.expires_after else None,
                last_active_at=now,
            )
            files = [
                await self._file_row(ticket, row.id, f, body.chunking_strategy, None)
                for f in body.file_ids or []
            ]
            await self.core.store.add(row)
            await self._attach(files)
            return answer(ticket, await self.store_object(row))

    async def list_stores(self, request: Request) -> Response:
        async with self._objects.enter(request, "GET " + ROOT) as ticket:
            params = validate(ListParams, {"order": "desc", **dict(request.query_params)})
            query = PageQuery(after=params.after, limit=params.limit, order=params.order)
            rows, more = await self.core.store.page(_owner(ticket), query)
            return answer(ticket, page([await self.store_object(r) for r in rows], more))

    async def retrieve(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "GET " + ONE) as ticket:
            return answer(ticket, await self.store_object(await self.found(_owner(ticket), store_id)))

    async def modify(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "POST " + ONE) as ticket:
            _, payload, body = await ticket.read_json(VectorStoreModify)
            owner = _owner(ticket)
            await self.found(owner, store_id)
            values: dict[str, Any] = {"last_active_at": utcnow()}
            if body.name is not None:
                values["name"] = body.name
            if body.metadata is not None:
                values["tags"] = dict(body.metadata)
            if "expires_after" in payload:
                values["expires_after_days"] = body.expires_after.days if body.expires_after else None
            row = await self.core.store.update(owner, store_id, **values)
            if row is None:
                raise no_store(store_id)
            return answer(ticket, await self.store_object(row))

    async def delete(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "DELETE " + ONE) as ticket:
            owner = _owner(ticket)
            await self.found(owner, store_id)
            seqs = list(await self.core.store.vectors(store_id))
            if not await self.core.store.delete(owner, store_id):
                raise no_store(store_id)
            await self.core.index.remove(store_id, seqs)
            return answer(ticket, {"id": store_id, "object": "vector_store.deleted", "deleted": True})

    # Files ---------------------------------------------------------------------------------------

    async def add_file(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "POST " + FILES) as ticket:
            _, _, body = await ticket.read_json(FileCreate)
            await self.found(_owner(ticket), store_id)
            row = await self._file_row(
                ticket, store_id, body.file_id, body.chunking_strategy, body.attributes
            )
            await self._attach([row])
            return answer(ticket, file_object(row))

    async def list_files(self, request: Request, store_id: str, batch_id: str | None = None) -> Response:
        endpoint = "GET " + (BATCHES + "/{batch_id}/files" if batch_id else FILES)
        async with self._objects.enter(request, endpoint) as ticket:
            query = dict(request.query_params)
            status = query.pop("filter", None)
            params = validate(ListParams, {"order": "desc", **query})
            owner = _owner(ticket)
            await self.found(owner, store_id)
            if batch_id is not None and await self.core.store.batch(owner, store_id, batch_id) is None:
                raise no_batch(batch_id)
            rows = await self.core.store.files(owner, store_id, status=status, batch_id=batch_id)
            if params.order == "desc":
                rows.reverse()
            ids = [r.file_id for r in rows]
            if params.after is not None:
                rows = rows[ids.index(params.after) + 1 :] if params.after in ids else []
            return answer(
                ticket, page([file_object(r) for r in rows[: params.limit]], len(rows) > params.limit)
            )

    async def get_file(self, request: Request, store_id: str, file_id: str) -> Response:
        async with self._objects.enter(request, "GET " + FILES + "/{file_id}") as ticket:
            return answer(ticket, file_object(await self._found_file(ticket, store_id, file_id)))

    async def update_file(self, request: Request, store_id: str, file_id: str) -> Response:
        async with self._objects.enter(request, "POST " + FILES + "/{file_id}") as ticket:
            _, _, body = await ticket.read_json(FileUpdate)
            await self._found_file(ticket, store_id, file_id)
            row = await self.core.store.set_file(
                _owner(ticket), store_id, file_id, attributes=dict(body.attributes or {})
            )
            if row is None:
                raise no_file(file_id)
            return answer(ticket, file_object(row))

    async def delete_file(self, request: Request, store_id: str, file_id: str) -> Response:
        async with self._objects.enter(request, "DELETE " + FILES + "/{file_id}") as ticket:
            await self.found(_owner(ticket), store_id)
            seqs = await self.core.store.detach(_owner(ticket), store_id, file_id)
            if seqs is None:
                raise no_file(file_id)
            await self.core.index.remove(store_id, seqs)
            return answer(ticket, {"id": file_id, "object": "vector_store.file.deleted", "deleted": True})

    async def file_content(self, request: Request, store_id: str, file_id: str) -> Response:
        """The file's text as its chunks hold it (the overlap shown once)."""
        async with self._objects.enter(request, "GET " + FILES + "/{file_id}/content") as ticket:
            await self._found_file(ticket, store_id, file_id)
            chunks = await self.core.store.chunks(store_id, [file_id])
            data = [{"type": "text", "text": c.text} for c in chunks]
            body = {
                "object": "vector_store.file_content.page",
                "data": data,
                "has_more": False,
                "next_page": None,
            }
            return answer(ticket, body)

    # File batches ---------------------------------------------------------------------------------

    async def create_batch(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "POST " + BATCHES) as ticket:
            _, _, body = await ticket.read_json(FileBatchCreate)
            owner = _owner(ticket)
            await self.found(owner, store_id)
            batch = StoredFileBatch(
                id="vsfb_" + secrets.token_hex(16),
                tenant_id=owner.tenant_id,
                created_by=owner.key_id,
                end_user=self._objects.owner(ticket).user,
                created_at=utcnow(),
                tags={},
                vector_store_id=store_id,
                cancelled=False,
            )
            rows: list[StoredVectorStoreFile] = []
            for file_id in body.file_ids or []:
                rows.append(
                    await self._file_row(
                        ticket, store_id, file_id, body.chunking_strategy, body.attributes, batch.id
                    )
                )
            for one in body.files or []:
                chunking = one.chunking_strategy or body.chunking_strategy
                attributes = one.attributes if one.attributes is not None else body.attributes
                rows.append(
                    await self._file_row(ticket, store_id, one.file_id, chunking, attributes, batch.id)
                )
            await self.core.store.add(batch)
            await self._attach(rows)
            return answer(ticket, await self.batch_object(batch))

    async def get_batch(self, request: Request, store_id: str, batch_id: str) -> Response:
        async with self._objects.enter(request, "GET " + BATCHES + "/{batch_id}") as ticket:
            owner = _owner(ticket)
            await self.found(owner, store_id)
            batch = await self.core.store.batch(owner, store_id, batch_id)
            if batch is None:
                raise no_batch(batch_id)
            return answer(ticket, await self.batch_object(batch))

    async def cancel_batch(self, request: Request, store_id: str, batch_id: str) -> Response:
        async with self._objects.enter(request, "POST " + BATCHES + "/{batch_id}/cancel") as ticket:
            owner = _owner(ticket)
            await self.found(owner, store_id)
            batch = await self.core.store.cancel_batch(owner, store_id, batch_id)
            if batch is None:
                raise no_batch(batch_id)
            return answer(ticket, await self.batch_object(batch))

    # Search --------------------------------------------------------------------------------------

    async def search(self, request: Request, store_id: str) -> Response:
        async with self._objects.enter(request, "POST " + ONE + "/search") as ticket:
            _, _, body = await ticket.read_json(SearchRequest)
            owner = _owner(ticket)
            await self.usable(owner, store_id, param="vector_store_id")
            threshold = body.ranking_options.score_threshold if body.ranking_options else None
            results = await self.core.search(
                Acting(owner.key_id, ticket.tab.request_id),
                owner,
                [store_id],
                body.queries,
                body.max_num_results,
                filters=body.filters,
                threshold=threshold,
            )
            results_page = {
                "object": "vector_store.search_results.page",
                "search_query": body.queries,
                "data": [r.as_search_result() for r in results],
                "has_more": False,
                "next_page": None,
            }
            return answer(ticket, results_page)

    # Shared --------------------------------------------------------------------------------------

    async def found(self, owner: Owner, store_id: str, param: str = "vector_store_id") -> StoredVectorStore:
        row = await self.core.store.get(owner, store_id)
        if row is None:
            raise no_store(store_id, param)
        return row

    async def usable(self, owner: Owner, store_id: str, *, param: str) -> StoredVectorStore:
        """A store the owner may search (not expired); its last activity moved to now."""
        row = await self.found(owner, store_id, param)
        expires = expires_at(row)
        if expires is not None and expires <= utcnow():
            raise InvalidRequest(
                f"Vector store '{store_id}' is expired.", param=param, code="vector_store_expired"
            )
        await self.core.store.update(owner, store_id, last_active_at=utcnow())
        return row

    async def store_object(self, row: StoredVectorStore) -> dict[str, Any]:
        counts = await self.core.store.counts(row.id)
        expires = expires_at(row)
        expired = expires is not None and expires <= utcnow()
        return {
            "id": row.id,
            "object": "vector_store",
            "created_at": unix(row.created_at),
            "name": row.name,
            "description": row.description,
            "usage_bytes": await self.core.store.usage_bytes(row.id),
            "file_counts": counts.as_dict(),
            "status": "expired" if expired else (IN_PROGRESS if counts.in_progress else "completed"),
            "expires_after": (
                {"anchor": "last_active_at", "days": row.expires_after_days}
                if row.expires_after_days
                else None
            ),
            "expires_at": unix(expires),
            "last_active_at": unix(row.last_active_at),
            "metadata": dict(row.tags or {}),
        }

    async def batch_object(self, batch: StoredFileBatch) -> dict[str, Any]:
        counts = await self.core.store.counts(batch.vector_store_id, batch_id=batch.id)
        status = CANCELLED if batch.cancelled else (IN_PROGRESS if counts.in_progress else "completed")
        return {
            "id": batch.id,
            "object": "vector_store.files_batch",
            "created_at": unix(batch.created_at),
            "vector_store_id": batch.vector_store_id,
            "status": status,
            "file_counts": counts.as_dict(),
        }

    async def _file_row(
        self,
        ticket: Ticket,
        store_id: str,
        file_id: str,
        chunking: ChunkingStrategy | None,
        attributes: dict[str, Any] | None,
        batch_id: str | None = None,
    ) -> StoredVectorStoreFile:
        """A new store file for one of the tenant's files (the Files API's 404 otherwise)."""
        objects = self._objects.owner(ticket)
        stored = await self._objects.files.get_file(objects.tenant_id, file_id, utcnow())
        if stored is None:
            raise no_such("file", file_id)
        strategy = chunking.resolved() if chunking is not None else auto_chunking()
        return new_store_file(
            _owner(ticket),
            store_id,
            file_id,
            stored.filename,
            strategy,
            attributes,
            user=objects.user,
            batch_id=batch_id,
        )

    async def _attach(self, rows: list[StoredVectorStoreFile]) -> None:
        if rows:
            try:
                await self.core.store.attach(rows)
            except FileGone as gone:  # deleted since `_file_row` found it
                raise no_such("file", gone.file_id) from None
            await self.core.submit(rows)

    async def _found_file(self, ticket: Ticket, store_id: str, file_id: str) -> StoredVectorStoreFile:
        owner = _owner(ticket)
        await self.found(owner, store_id)
        row = await self.core.store.file(owner, store_id, file_id)
        if row is None:
            raise no_file(file_id)
        return row


def _owner(ticket: Ticket) -> Owner:
    principal = ticket.principal
    return Owner(principal.tenant_id, principal.key_id)
