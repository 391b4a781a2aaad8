"""What the vector stores API and the Responses API's `file_search` tool share: a store file's
ingestion (a durable job), and searching stores (docs/memory.md, "Vector stores and file search").

Ingestion runs as the `vector-store-file` job kind on the job runner (gateway/jobs), one job per
store file: the file's text (vector_text.py), its tokens from the embedding model's /tokenize, each
chunk's text from its /detokenize, the chunks embedded a batch at a time through /v1/embeddings
(each in a background slot, `job.turn()`), then chunks and vectors written with the file's
`completed` status in one transaction, and added to the store's index. A file that cannot be read
ends `failed` with OpenAI's `last_error`; a crash retries the whole file (nothing is half written).

Every call to the embedding model is the gateway's own request to its own endpoint, made in process
as the key that added the file (or that searches): authenticated, limited, routed and in the ledger
under /v1/embeddings like the same request over HTTP, so the embedding tokens are counted where the
key's other tokens are.

Vectors live in a `VectorIndex` (FAISS by default), one index per vector store, its file in the blob
store, rebuilt from the chunks' vectors in SQL when lost. A search is restricted to the chunks of the
store's completed files whose attributes pass the filter (read from SQL), so the index never decides
who may see what.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.blobs import BlobStore
from gateway.errors import APIError
from gateway.jobs import Job, JobRunner
from gateway.memory.index import Vector, VectorIndex, from_bytes
from gateway.protocol.vector_stores import ComparisonFilter, CompoundFilter, matches
from gateway.services.own_calls import embedded, post_json
from gateway.services.stored import ANONYMOUS_TENANT
from gateway.services.vector_text import Unreadable, file_text, token_ends, windows
from gateway.store import FileStore, utcnow
from gateway.store.owned import Owner
from gateway.store.vector_stores import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    StoredVectorStoreFile,
    VectorStoreStore,
)

KIND = "vector-store-file"
# Runs of one file's job: a crash or an engine's 5xx is retried, the last failure ends the file.
ATTEMPTS = 3


@dataclass(frozen=True)
class VectorOptions:
    embedding_model: str
    embed_batch: int = 32


@dataclass(frozen=True)
class Acting:
    """The key the gateway's own requests act as, and the request id theirs derive from."""

    key_id: str | None
    request_id: str

    def call(self) -> InternalCall:
        return InternalCall(self.key_id, f"{self.request_id}-vs-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class Result:
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]

    def as_search_result(self) -> dict[str, Any]:
        """One entry of OpenAI's vector store search page."""
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "score": self.score,
            "attributes": self.attributes,
            "content": [{"type": "text", "text": self.text}],
        }


class VectorCore:
    def __init__(
        self,
        store: VectorStoreStore,
        files: FileStore,
        blobs: BlobStore,
        index: VectorIndex,
        runner: JobRunner,
        options: VectorOptions,
    ) -> None:
        self.store = store
        self.files = files
        self.blobs = blobs
        self.index = index
        self.runner = runner
        self.options = options
        self._app: ASGIApp | None = None

    def bind(self, app: ASGIApp) -> None:
        self._app = app

    # Calls to the gateway's own endpoints --------------------------------------------------------

    async def post(self, acting: Acting, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._app is not None, "VectorCore.bind(app) was not called"
        return await post_json(self._app, path, body, {ACTING_AS: acting.call()}, "vector store")

    async def embed(self, acting: Acting, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        body = {
            "model": self.options.embedding_model,
            "input": list(texts),
            # A chunk longer than the embedding model's context is embedded on its first tokens
            # (vLLM's truncation) rather than refused.
            "truncate_prompt_tokens": -1,
        }
        return embedded(await self.post(acting, "/v1/embeddings", body), texts)

    async def chunks(self, acting: Acting, text: str, size: int, overlap: int) -> list[str]:
        """`text` cut into windows of the embedding model's tokens (vector_text.windows)."""
        if not text.strip():
            return []
        model = self.options.embedding_model
        body = {"model": model, "prompt": text, "add_special_tokens": False, "return_token_strs": True}
        answer = await self.post(acting, "/tokenize", body)
        strs = [str(t) for t in answer.get("token_strs") or []]
        ends = token_ends(text, strs)
        pieces: list[str] = []
        for start, end in windows(len(ends), size, overlap):
            piece = text[ends[start - 1] if start else 0 : ends[end - 1] if end < len(ends) else len(text)]
            if piece.strip():
                pieces.append(piece.strip())
        return pieces

    # Ingestion -----------------------------------------------------------------------------------

    async def submit(self, rows: Sequence[StoredVectorStoreFile]) -> None:
        for row in rows:
            payload = {"vector_store_id": row.vector_store_id, "file_id": row.file_id}
            await self.runner.submit(
                KIND, row.tenant_id, payload, created_by=row.created_by, user=row.end_user
            )

    async def __call__(self, job: Job) -> dict[str, Any]:
        """The `vector-store-file` job: ingest one store file."""
        owner = Owner(job.tenant_id, job.created_by)
        store_id, file_id = job.payload["vector_store_id"], job.payload["file_id"]
        row = await self.store.file(owner, store_id, file_id)
        if row is None or row.status != IN_PROGRESS:
            return {"status": row.status if row is not None else "gone"}
        try:
            return await self._ingest(job, row)
        except Unreadable as problem:
            error = {"code": problem.code, "message": problem.message}
        except APIError as problem:
            # A refusal (a 4xx: a model not served, a revoked key) is not mended by a retry; an
            # engine's failure or a rate limit (429) may be, after the runner's backoff.
            if (problem.status >= 500 or problem.status == 429) and job.attempt < ATTEMPTS:
                raise
            error = {"code": "server_error", "message": problem.message}
        await self.store.set_file(owner, store_id, file_id, status=FAILED, last_error=error)
        return {"status": FAILED}

    async def _ingest(self, job: Job, row: StoredVectorStoreFile) -> dict[str, Any]:
        acting = Acting(job.created_by, f"job-{job.id}-{job.attempt}")
        pieces, usage = await self._read(job, acting, row)
        vectors: list[Vector] = []
        for start in range(0, len(pieces), self.options.embed_batch):
            job.check()
            async with job.turn():
                vectors += await self.embed(acting, pieces[start : start + self.options.embed_batch])
        chunks = [(text, vector.tobytes()) for text, vector in zip(pieces, vectors, strict=True)]
        added = await self.store.add_chunks(row, chunks, usage)
        if added is None:
            return {"status": "cancelled"}
        await self.index.add(row.vector_store_id, {seq: from_bytes(data) for seq, data in added.items()})
        if not await self.store.holds(row.vector_store_id, row.file_id):
            # Detached or deleted between the chunks' commit and the index's write: that removal
            # may have run before these vectors were added, so they go here.
            await self.index.remove(row.vector_store_id, list(added))
            return {"status": "cancelled"}
        return {"status": COMPLETED, "chunks": len(chunks)}

    # A deleted file ----------------------------------------------------------------------------------

    async def forget_files(self, file_ids: Collection[str]) -> int:
        """Deleted files out of every vector store holding them (OpenAI's `DELETE /v1/files/{id}`
        removes a file from its stores): rows and chunks in one transaction, so `file_counts`,
        `usage_bytes` and search change at once, then the chunks' vectors out of each store's
        index. The number of chunks dropped. Idempotent: the Files API, the file sweeper,
        retention and GDPR erasure all call it for the files they delete."""
        dropped = await self.store.drop_files(file_ids)
        for store_id, seqs in dropped.items():
            await self.index.remove(store_id, seqs)
        return sum(len(seqs) for seqs in dropped.values())

    async def forget_user_files(self, tenant_id: str, user: str | None) -> int:
        """An end user's files (or a whole tenant's) out of the stores: GDPR erasure's step
        before the files themselves are erased."""
        return await self.forget_files(await self.store.user_files(tenant_id, user))

    async def _read(self, job: Job, acting: Acting, row: StoredVectorStoreFile) -> tuple[list[str], int]:
        stored = await self.files.get_file(row.tenant_id or ANONYMOUS_TENANT, row.file_id, utcnow())
        if stored is None:
            raise Unreadable("invalid_file", f"No such file: '{row.file_id}'.")
        try:
            data = b"".join([chunk async for chunk in self.blobs.get(stored.blob_key)])
        except KeyError:
            raise Unreadable("invalid_file", f"The content of file '{row.file_id}' is gone.") from None
        text = await asyncio.to_thread(file_text, data, stored.content_type, stored.filename)
        static = row.chunking.get("static") or {}
        job.check()
        pieces = await self.chunks(
            acting,
            text,
            int(static.get("max_chunk_size_tokens", 800)),
            int(static.get("chunk_overlap_tokens", 400)),
        )
        if not pieces:
            raise Unreadable("invalid_file", "The file holds no text to search.")
        return pieces, sum(len(p.encode()) for p in pieces)

    # Search --------------------------------------------------------------------------------------

    async def search(
        self,
        acting: Acting,
        owner: Owner,
        store_ids: Sequence[str],
        queries: Sequence[str],
        k: int,
        *,
        filters: ComparisonFilter | CompoundFilter | None = None,
        threshold: float | None = None,
    ) -> list[Result]:
        """The `k` best chunks of the stores for the queries (each chunk at its best score over the
        queries), best first. The stores must be the owner's (checked by the caller)."""
        candidates: list[tuple[str, dict[int, tuple[StoredVectorStoreFile, str]]]] = []
        for store_id in store_ids:
            files = {
                f.file_id: f
                for f in await self.store.files(owner, store_id, status=COMPLETED)
                if matches(filters, f.attributes or {})
            }
            chunks = await self.store.chunks(store_id, list(files)) if files else []
            candidates.append((store_id, {c.seq: (files[c.file_id], c.text) for c in chunks}))
        if not any(allowed for _, allowed in candidates):
            return []
        vectors = await self.embed(acting, queries)
        best: dict[tuple[str, int], Result] = {}
        for store_id, allowed in candidates:
            if not allowed:
                continue
            for vector in vectors:
                for hit in await self.index.search(store_id, vector, k, among=list(allowed)):
                    file, text = allowed[hit.seq]
                    found = Result(file.file_id, file.filename, hit.score, text, dict(file.attributes or {}))
                    key = (store_id, hit.seq)
                    if key not in best or best[key].score < found.score:
                        best[key] = found
        ranked = sorted(best.values(), key=lambda r: r.score, reverse=True)
        return [r for r in ranked if threshold is None or r.score >= threshold][:k]


def new_store_file(
    owner: Owner,
    store_id: str,
    file_id: str,
    filename: str,
    chunking: dict[str, Any],
    attributes: dict[str, Any] | None,
    *,
    user: str | None = None,
    batch_id: str | None = None,
) -> StoredVectorStoreFile:
    return StoredVectorStoreFile(
        vector_store_id=store_id,
        file_id=file_id,
        tenant_id=owner.tenant_id,
        created_by=owner.key_id,
        end_user=user,
        created_at=utcnow(),
        filename=filename,
        status=IN_PROGRESS,
        last_error=None,
        chunking=chunking,
        attributes=dict(attributes or {}),
        usage_bytes=0,
        batch_id=batch_id,
    )
