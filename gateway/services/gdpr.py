"""GDPR export and erasure (issue 21, point 5) as durable jobs of the job runner (docs/governance.md).

`gdpr-export` writes a ZIP of JSON files, one per kind of the registry (gateway/store/gdpr.py),
with the bytes of the subject's files, voice clips and consent recordings beside them, to the
blob store. `gdpr-erase` removes every kind from SQL, the blob store (files, upload parts,
fine-tuning adapters, earlier exports, voice audio), the vector index (rebuilt from SQL at once)
and the knowledge graph, pseudonymises the ledger, then sweeps:
every table with a tenant or user column, the blob keys the erased rows held (and, for a tenant on
a local blob store, every blob under a directory named after it), the vector index and the graph,
and records the counts and the sweep in the audit log with the real actor. Both are idempotent: a
run that dies is retried.

The jobs carry no tenant or user column of their own (a tenant's erasure would otherwise delete
itself): the subject is in the payload, and an erasure's user is replaced there by its digest
when the run ends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import numpy as np

from gateway.blobs import BlobStore, LocalBlobStore
from gateway.jobs import Job, JobRecord, JobRunner
from gateway.memory.graph import GraphStore
from gateway.memory.index import VectorIndex
from gateway.services.adapters import ADAPTER_FILES
from gateway.store import AuditContext, utcnow
from gateway.store.gdpr import Erased, OwnedKind, Subject
from gateway.store.gdpr_store import GdprStore, scrub_payload

EXPORT = "gdpr-export"
ERASE = "gdpr-erase"
KINDS = (EXPORT, ERASE)
_CHUNK = 1 << 20


def digest(subject: Subject) -> str:
    """How the audit log and a finished erasure's payload name an erased end user."""
    if subject.user is None:
        return subject.tenant_id
    return "user-" + hashlib.sha256(f"{subject.tenant_id}:{subject.user}".encode()).hexdigest()[:24]


class Gdpr:
    def __init__(
        self,
        store: GdprStore,
        runner: JobRunner,
        *,
        blobs: BlobStore | None = None,
        index: VectorIndex | None = None,
        graph: GraphStore | None = None,
        forget_tenant: Callable[[str], Awaitable[None]] | None = None,
        forget_queries: Callable[[str | None], int] | None = None,
        settle_s: float = 0.0,
    ) -> None:
        self.store = store
        # How long after the first pass a second one runs: ledger rows (written in batches off the
        # request path) and objects of requests still in flight when the erasure began land by then.
        self._settle_s = settle_s
        # Tells every replica's key cache that an erased tenant's keys are revoked.
        self._forget_tenant = forget_tenant
        # Drops the tenant's memory search queries this replica keeps (gateway/memory/query_cache.py).
        self._forget_queries = forget_queries
        # Moves the tenant's memory scope versions: no replica's scope cache keeps erased rows
        # (gateway/memory/scope_cache.py; set once built).
        self.erased_memories: Callable[[str | None], Awaitable[None]] | None = None
        # Takes the subject's files out of the vector stores holding them before the files are
        # erased (VectorCore.forget_user_files; set when the vector stores API is served).
        self.forget_files: Callable[[str, str | None], Awaitable[int]] | None = None
        self._runner = runner
        self._blobs = blobs
        self._index = index
        self._graph = graph

    def register(self) -> None:
        # One run at a time per replica, above retention, below interactive work.
        self._runner.register(EXPORT, self._export_job, priority=-2, concurrency=1)
        self._runner.register(ERASE, self._erase_job, priority=-1, concurrency=1)

    @property
    def exports_stored(self) -> bool:
        return self._blobs is not None

    async def request(self, kind: str, tenant_id: str, user: str | None, audit: AuditContext) -> JobRecord:
        """What the admin routes call (they know no store types)."""
        return await self.submit(kind, Subject(tenant_id, user), audit)

    async def submit(self, kind: str, subject: Subject, audit: AuditContext) -> JobRecord:
        payload = {
            "tenant_id": subject.tenant_id,
            "user": subject.user,
            "actor": audit.actor,
            "request_id": audit.request_id,
            "client_ip": audit.client_ip,
        }
        record = await self._runner.submit(kind, None, payload)
        details = {"job_id": record.id, "subject": "tenant" if subject.whole_tenant else "user"}
        if subject.user is not None:
            details["user"] = digest(subject)
        await self.store.audit(f"{kind.replace('-', '.')}.requested", subject, details, audit, utcnow())
        return record

    async def get(self, kind: str, tenant_id: str, job_id: str) -> JobRecord | None:
        """The job, when it is of `kind` and about `tenant_id` (else None: a 404)."""
        record = await self._runner.get(job_id)
        if record is None or record.kind != kind or record.payload.get("tenant_id") != tenant_id:
            return None
        return record

    async def downloaded(self, record: JobRecord, audit: AuditContext) -> None:
        """Who took a copy of the personal data (`gdpr.export.download`)."""
        subject = Subject(record.payload["tenant_id"], record.payload.get("user"))
        details: dict[str, Any] = {"job_id": record.id}
        if subject.user is not None:
            details["user"] = digest(subject)
        await self.store.audit("gdpr.export.download", subject, details, audit, utcnow())

    def content(self, record: JobRecord) -> AsyncIterator[bytes] | None:
        """A finished export's ZIP, streamed from the blob store."""
        key = (record.result or {}).get("blob_key") if record.status == "completed" else None
        if key is None or self._blobs is None:
            return None
        return self._blobs.get(key)

    # Export --------------------------------------------------------------------------------------

    async def _export_job(self, job: Job) -> dict[str, Any]:
        if self._blobs is None:
            raise RuntimeError("exports are stored in the blob store: enable the Files API")
        subject = Subject(job.payload["tenant_id"], job.payload.get("user"))
        with tempfile.TemporaryFile() as spool:
            counts = await self.export(subject, spool, job=job)
            spool.seek(0)
            key = f"gdpr-exports/{subject.tenant_id}/{job.id}.zip"
            size = await self._blobs.put(key, _read(spool))
        return {"blob_key": key, "bytes": size, "counts": counts}

    async def export(self, subject: Subject, out: IO[bytes], *, job: Job | None = None) -> dict[str, int]:
        """The subject's data as a ZIP written to `out`: `<kind>.json` per kind (its rows, and its
        children's under their table's name), `files/<id>/<filename>` per stored file, and
        `vector_index.json` (each memory's vector and whether the index holds it)."""
        counts: dict[str, int] = {}
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for kind in self.store.registry:
                if job is not None:
                    job.check()
                found = await self.store.export(kind, subject)
                if not found:
                    continue
                own = found.get(kind.name)
                counts[kind.name] = len(own) if own is not None else sum(len(rows) for rows in found.values())
                # Encoding and deflating off the event loop: an export may be large.
                await asyncio.to_thread(_write_json, archive, f"{kind.name}.json", found)
                if isinstance(kind, OwnedKind) and kind.export_blob is not None:
                    await self._export_blobs(archive, found[kind.name], kind.export_blob)
                if kind.name == "memories":
                    entries = await self._vectors(subject, found)
                    await asyncio.to_thread(_write_json, archive, "vector_index.json", entries)
        return counts

    async def _export_blobs(
        self, archive: zipfile.ZipFile, rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]
    ) -> None:
        if self._blobs is None:
            return
        for row in rows:
            if await self._blobs.size(row["blob_key"]) is None:
                continue  # a file still uploading, or its blob already deleted
            with archive.open(name(row), "w") as member:
                async for chunk in self._blobs.get(row["blob_key"]):
                    member.write(chunk)

    async def _vectors(
        self, subject: Subject, found: dict[str, list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        held = await self._index.ids(subject.tenant_id) if self._index is not None else set()
        entries = []
        for row in found["memories"]:
            vector = np.frombuffer(base64.b64decode(row["vector"]), dtype=np.float32)
            entries.append(
                {
                    "memory_id": row["id"],
                    "seq": row["seq"],
                    "in_index": row["seq"] in held,
                    "vector": vector.tolist(),
                }
            )
        return entries

    # Erasure -------------------------------------------------------------------------------------

    async def _erase_job(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        subject = Subject(payload["tenant_id"], payload.get("user"))
        result = await self.erase(subject, job=job)
        audit = AuditContext(payload["actor"], payload.get("request_id"), payload.get("client_ip"))
        details: dict[str, Any] = {"job_id": job.id, **result}
        if subject.user is not None:
            details["user"] = digest(subject)
        await self.store.audit("gdpr.erase", subject, details, audit, utcnow())
        async with job.transaction() as step:
            # The user's name leaves the job's own row too.
            await step.session.execute(
                scrub_payload(job.id, {**payload, "user": digest(subject) if subject.user else None})
            )
        return result

    async def erase(self, subject: Subject, *, job: Job | None = None) -> dict[str, Any]:
        """Every kind erased, earlier exports deleted, the index rebuilt, then the sweep."""
        counts: dict[str, int] = {}
        blob_keys: list[str] = []
        seqs: set[int] = set()
        for second in (False, True):
            if second:
                if self._settle_s <= 0:
                    break
                await asyncio.sleep(self._settle_s)
            await self._erase_pass(subject, job, counts, blob_keys, seqs)
        counts["exports"] = await self._drop_exports(subject, blob_keys)
        if subject.whole_tenant and self._forget_tenant is not None:
            await self._forget_tenant(subject.tenant_id)
        if self._index is not None and (seqs or subject.whole_tenant):
            await self._index.purge(subject.tenant_id)
        if self._forget_queries is not None:
            self._forget_queries(subject.tenant_id)
        if self._graph is not None:
            await self._graph.erase(subject.tenant_id, subject.user)
        sweep = await self.sweep(subject, blob_keys, seqs)
        return {"erased": {name: n for name, n in counts.items() if n}, "sweep": sweep}

    async def _erase_pass(
        self, subject: Subject, job: Job | None, counts: dict[str, int], blob_keys: list[str], seqs: set[int]
    ) -> None:
        """One pass over every kind (the subject's files out of the vector stores first)."""
        if self.forget_files is not None:
            dropped = await self.forget_files(subject.tenant_id, subject.user)
            counts["chunks_of_files"] = counts.get("chunks_of_files", 0) + dropped
        for kind in self.store.registry:
            if job is not None:
                job.check()
            erased = await self.store.erase(kind, subject, self._drop_blobs)
            counts[kind.name] = counts.get(kind.name, 0) + erased.rows
            blob_keys += erased.blob_keys
            for found in erased.vectors.values():
                seqs.update(found)
        if self.erased_memories is not None:
            await self.erased_memories(subject.tenant_id)

    async def _drop_blobs(self, erased: Erased) -> None:
        if self._blobs is None:
            return
        for key in erased.blob_keys:
            await self._blobs.delete(key)
        for prefix in erased.blob_prefixes:
            for name in ADAPTER_FILES:
                await self._blobs.delete(f"{prefix}{name}")

    async def _drop_exports(self, subject: Subject, blob_keys: list[str]) -> int:
        """Earlier exports holding the subject's data: a user's own and their tenant's whole ones; for
        a tenant, all of its exports. Blob and job row."""
        dropped = 0
        for record in await self._runner.queue.list(kind=EXPORT, limit=10_000):
            about = record.payload
            if about.get("tenant_id") != subject.tenant_id:
                continue
            if subject.user is not None and about.get("user") not in (None, subject.user):
                continue
            key = (record.result or {}).get("blob_key")
            if key and self._blobs is not None:
                await self._blobs.delete(key)
                blob_keys.append(key)
            await self._runner.queue.delete(record.id)
            dropped += 1
        return dropped

    async def sweep(self, subject: Subject, blob_keys: list[str], seqs: set[int]) -> dict[str, Any]:
        """What is left of the subject: rows per kind and per table, blobs, vectors. `clean` when
        nothing is."""
        kinds = {name: n for name, n in (await self.store.remaining(subject)).items() if n}
        tables = {name: n for name, n in (await self.store.scan(subject)).items() if n}
        blobs = [
            key for key in blob_keys if self._blobs is not None and await self._blobs.size(key) is not None
        ]
        if subject.whole_tenant and isinstance(self._blobs, LocalBlobStore):
            blobs += _under_tenant(self._blobs, subject.tenant_id)
        vectors = 0
        if self._index is not None:
            held = await self._index.ids(subject.tenant_id)
            vectors = len(held) if subject.whole_tenant else len(held & seqs)
        graph = await self._graph.count(subject.tenant_id, subject.user) if self._graph is not None else 0
        clean = not kinds and not tables and not blobs and not vectors and not graph
        found: dict[str, Any] = {
            "clean": clean,
            "kinds": kinds,
            "tables": tables,
            "blobs": sorted(set(blobs)),
            "vectors": vectors,
        }
        if self._graph is not None:  # the knowledge graph's nodes left, when memory has one
            found["graph"] = graph
        return found


def _under_tenant(blobs: LocalBlobStore, tenant_id: str) -> list[str]:
    """Blob keys with a directory named after the tenant (`new_blob_key` groups keys so)."""
    found = []
    for path in blobs.root.rglob("*"):
        relative = path.relative_to(blobs.root)
        if path.is_file() and tenant_id in relative.parts[:-1]:
            found.append(relative.as_posix())
    return found


def _write_json(archive: zipfile.ZipFile, name: str, value: Any) -> None:
    archive.writestr(name, json.dumps(value, indent=1, default=str))


async def _read(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := spool.read(_CHUNK):
        yield chunk
