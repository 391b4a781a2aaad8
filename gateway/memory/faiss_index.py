"""FAISS (faiss-cpu, embedded) behind `VectorIndex`: one index per tenant, in memory, its file in the
blob store.

Each tenant's index is an `IndexIDMap2` over exact inner product (`IndexFlatIP`) on unit vectors
(cosine similarity) while the tenant has at most `hnsw_threshold` memories, and over HNSW (M=32,
efSearch 64) above it, rebuilt once when the count passes the threshold. A search is restricted to
the row numbers its scope allows with FAISS's own `IDSelectorBatch`, for flat and HNSW alike. The
selector of a scope handed as the scope cache's read-only array is kept while that array is the
scope's (the same object: the same rows), so a chat's search does not rebuild a 10k-row selector;
and a flat search small enough to be sub-millisecond runs on the event loop, not a worker thread.

The index is loaded on a tenant's first use from its blob, or rebuilt from the vectors in SQL when
there is none (or it is unreadable); every write saves it back. HNSW cannot remove vectors, so
there a row's vector is labelled with its row number and a generation in the high bits (`_GEN`):
replacing a row's vector adds it under the next generation, and a search's selector admits only
each row's current label; the old vector (and a removed row's) stays as a tombstone until a
compaction, a rebuild from SQL at the first write after tombstones pass `COMPACT_SHARE` of the
index. This backend is per replica: replicas sharing one memory need a shared backend (pgvector
or Chroma, docs/memory.md).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

import faiss
import numpy as np

from gateway.blobs import BlobStore
from gateway.memory.index import Hit, Loader, Vector, normalized

HNSW_M = 32
HNSW_EF_SEARCH = 64
# An HNSW label: the row number in the low 40 bits, its vector's generation above them.
_GEN = 40
_SEQ_MASK = (1 << _GEN) - 1
# Tombstones (replaced or removed vectors still in an HNSW index) beyond this share of it: rebuilt
# from SQL at the next write.
COMPACT_SHARE = 0.2
# OpenMP's threads for builds (every core the process may use), read once on import.
_THREADS = faiss.omp_get_max_threads()
# A flat search of at most this many stored floats (vectors x dimensions) runs on the event loop:
# 10k vectors of 256 take about 0.3 ms with their scope's selector on this host, less than the hop
# to a worker thread and back costs under load. HNSW, and larger flat indexes, go to a thread.
INLINE_FLOATS = 4_000_000
# Row numbers held by the kept scope selectors at most (about 40 bytes each in FAISS's set).
SELECTOR_ROWS = 1_000_000


@dataclass
class _Tenant:
    index: faiss.Index
    hnsw: bool
    # HNSW only: rows whose label is not the row number itself (a replaced vector's generation),
    # None for a removed row; and how many vectors in the index are no row's current one.
    labels: dict[int, int | None] = field(default_factory=dict)
    tombstones: int = 0
    # Bumped whenever `labels` changes: a kept HNSW selector (built from them) is then rebuilt.
    changes: int = 0

    @property
    def stale(self) -> bool:
        return self.tombstones > 0 and self.tombstones >= COMPACT_SHARE * self.index.ntotal

    def current(self, seqs: np.ndarray) -> np.ndarray:
        """The labels the rows `seqs` have now (removed rows left out)."""
        if not self.labels:
            return seqs
        moved = np.isin(seqs, np.fromiter(self.labels, dtype=np.int64, count=len(self.labels)))
        kept = [label for seq in seqs[moved].tolist() if (label := self.labels[seq]) is not None]
        return np.concatenate([seqs[~moved], np.asarray(kept, dtype=np.int64)])


@dataclass
class _Selector:
    """A scope's search parameters, kept while `admitted` (the scope cache's read-only array) is
    the scope's and the tenant's index and labels are the ones it was built on."""

    admitted: np.ndarray
    held: _Tenant
    changes: int
    selector: faiss.IDSelector  # the parameters point at it: kept alive with them
    params: faiss.SearchParameters


class FaissIndex:
    def __init__(
        self,
        blobs: BlobStore,
        load: Loader,
        *,
        dimensions: int | None = None,
        hnsw_threshold: int = 10_000,
        prefix: str = "memory-index",
    ) -> None:
        self._blobs = blobs
        # The blob keys' first segment: memories' per-tenant indexes, or one per vector store.
        self._prefix = prefix
        self._load = load
        self._dimensions = dimensions
        self.hnsw_threshold = hnsw_threshold
        self._tenants: dict[str | None, _Tenant] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}
        # Scopes' selectors by (tenant, id of the scope's array), least recently used first.
        self._selectors: OrderedDict[tuple[str | None, int], _Selector] = OrderedDict()
        self._selector_rows = 0

    def kind(self, tenant_id: str | None) -> str | None:
        """flat, hnsw, or None before the tenant's index is loaded (for tests and the docs)."""
        held = self._tenants.get(tenant_id)
        return None if held is None else ("hnsw" if held.hnsw else "flat")

    async def add(self, tenant_id: str | None, vectors: Mapping[int, Vector]) -> None:
        if not vectors:
            return
        async with self._lock(tenant_id):
            held = await self._tenant(tenant_id, dimensions=len(next(iter(vectors.values()))))
            if held.stale or (not held.hnsw and held.index.ntotal + len(vectors) > self.hnsw_threshold):
                held = await self._rebuild(tenant_id)
            ids = np.fromiter(vectors, dtype=np.int64, count=len(vectors))
            if held.index.ntotal and not held.hnsw:
                # Replacing: the old vectors of these rows go first.
                held.index.remove_ids(faiss.IDSelectorBatch(ids))
            matrix = np.stack([normalized(v) for v in vectors.values()])
            if held.hnsw and held.index.ntotal:
                ids, matrix = _next_labels(held, ids, matrix)
                if not len(ids):
                    return
            await asyncio.to_thread(_add, held.index, matrix, ids)
            await self._save(tenant_id, held)

    async def remove(self, tenant_id: str | None, seqs: Collection[int]) -> None:
        if not seqs:
            return
        async with self._lock(tenant_id):
            held = await self._tenant(tenant_id)
            if held.hnsw:
                # Tombstones: the SQL filter forgets them at once, the selector too from now on.
                for seq in seqs:
                    if held.labels.get(seq, seq) is not None:
                        held.labels[seq] = None
                        held.tombstones += 1
                held.changes += 1
                return
            held.index.remove_ids(faiss.IDSelectorBatch(np.fromiter(seqs, dtype=np.int64)))
            await self._save(tenant_id, held)

    async def search(
        self, tenant_id: str | None, query: Vector, k: int, *, among: Collection[int]
    ) -> list[Hit]:
        if len(among) == 0 or k <= 0:  # `among` may be a numpy array (the scope cache's)
            return []
        held = await self._tenant(tenant_id, dimensions=len(query))
        if held.index.ntotal == 0:
            return []
        params = self._params(tenant_id, held, among)
        wanted = min(k, len(among))
        matrix = normalized(query).reshape(1, -1)
        if not held.hnsw and held.index.ntotal * held.index.d <= INLINE_FLOATS:
            scores, ids = _search_one(held.index, matrix, wanted, params)
        else:
            scores, ids = await asyncio.to_thread(_search_one, held.index, matrix, wanted, params)
        return [Hit(int(i) & _SEQ_MASK, float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]

    def _params(self, tenant_id: str | None, held: _Tenant, among: Collection[int]) -> faiss.SearchParameters:
        """The search parameters restricting a search to `among`: kept for a read-only array (the
        scope cache's, unchanged while the scope is), built anew for anything else."""
        kept = isinstance(among, np.ndarray) and not among.flags.writeable
        key = (tenant_id, id(among))
        if kept:
            found = self._selectors.get(key)
            if found and found.admitted is among and found.held is held and found.changes == held.changes:
                self._selectors.move_to_end(key)
                return found.params
        admitted = among if isinstance(among, np.ndarray) else np.fromiter(among, dtype=np.int64)
        selector = faiss.IDSelectorBatch(held.current(admitted) if held.hnsw else admitted)
        if held.hnsw:
            params: faiss.SearchParameters = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                sel=selector, efSearch=HNSW_EF_SEARCH
            )
        else:
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        if kept and len(admitted) <= SELECTOR_ROWS:
            assert isinstance(among, np.ndarray)
            self._keep_selector(key, _Selector(among, held, held.changes, selector, params))
        return params

    def _keep_selector(self, key: tuple[str | None, int], entry: _Selector) -> None:
        old = self._selectors.pop(key, None)
        if old is not None:
            self._selector_rows -= len(old.admitted)
        self._selectors[key] = entry
        self._selector_rows += len(entry.admitted)
        while self._selector_rows > SELECTOR_ROWS:
            _, dropped = self._selectors.popitem(last=False)
            self._selector_rows -= len(dropped.admitted)

    async def ids(self, tenant_id: str | None) -> set[int]:
        async with self._lock(tenant_id):
            held = self._tenants.get(tenant_id)
            if held is None:
                data = await _read(self._blobs, _key(self._prefix, tenant_id))
                if data is None:
                    return set()
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
                return {int(i) & _SEQ_MASK for i in _ids_of(index)}
            removed = {seq for seq, label in held.labels.items() if label is None}
            return {int(i) & _SEQ_MASK for i in _ids_of(held.index)} - removed

    async def purge(self, tenant_id: str | None) -> None:
        async with self._lock(tenant_id):
            if not await self._load(tenant_id):
                self._tenants.pop(tenant_id, None)
                await self._blobs.delete(_key(self._prefix, tenant_id))
                return
            await self._save(tenant_id, await self._rebuild(tenant_id))

    async def close(self) -> None:
        self._tenants.clear()
        self._selectors.clear()
        self._selector_rows = 0

    # ----------------------------------------------------------------------------------------------

    def _lock(self, tenant_id: str | None) -> asyncio.Lock:
        return self._locks.setdefault(tenant_id, asyncio.Lock())

    async def _tenant(self, tenant_id: str | None, dimensions: int | None = None) -> _Tenant:
        held = self._tenants.get(tenant_id)
        if held is not None:
            return held
        data = await _read(self._blobs, _key(self._prefix, tenant_id))
        if data is not None:
            try:
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            except RuntimeError:
                index = None
            if index is not None:
                held = _loaded(index)
                self._tenants[tenant_id] = held
                return held
        if dimensions is not None and self._dimensions is None:
            self._dimensions = dimensions
        return await self._rebuild(tenant_id)

    async def _rebuild(self, tenant_id: str | None) -> _Tenant:
        """The tenant's index from the vectors in SQL: flat or HNSW by their count."""
        vectors = dict(await self._load(tenant_id))
        dimensions = len(next(iter(vectors.values()))) if vectors else self._dimensions
        if dimensions is None:
            raise RuntimeError("a memory index needs its first vector to know its dimensions")
        hnsw = len(vectors) > self.hnsw_threshold
        inner: faiss.Index
        if hnsw:
            inner = faiss.IndexHNSWFlat(dimensions, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexFlatIP(dimensions)
        index = faiss.IndexIDMap2(inner)
        if vectors:
            matrix = np.stack([normalized(v) for v in vectors.values()])
            ids = np.fromiter(vectors, dtype=np.int64, count=len(vectors))
            await asyncio.to_thread(_add, index, matrix, ids)
        held = _Tenant(index, hnsw=hnsw)
        self._tenants[tenant_id] = held
        return held

    async def _save(self, tenant_id: str | None, held: _Tenant) -> None:
        # Off the event loop: 10k vectors as HNSW serialize to 18 MB in ~0.1 s.
        data = await asyncio.to_thread(lambda: faiss.serialize_index(held.index).tobytes())

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        await self._blobs.put(_key(self._prefix, tenant_id), chunks())


def _add(index: faiss.Index, matrix: np.ndarray, ids: np.ndarray) -> None:
    faiss.omp_set_num_threads(_THREADS)  # the worker thread may have searched on one before
    index.add_with_ids(matrix, ids)


def _search_one(
    index: faiss.Index, matrix: np.ndarray, k: int, params: faiss.SearchParameters
) -> tuple[np.ndarray, np.ndarray]:
    """One query's search on one OpenMP thread (this worker thread's setting only): a single query
    gains nothing from more, and while the engines keep the cores busy OpenMP's waiting threads
    made a 2 ms search take 18 ms (docs/memory.md). Index builds keep every thread."""
    faiss.omp_set_num_threads(1)
    scores, ids = index.search(matrix, k, params=params)
    return scores, ids


def _next_labels(held: _Tenant, ids: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels (and vectors) to add to an HNSW index for the rows `ids`: a row it holds a
    vector of gets the next generation of its label (the old vector a tombstone), or nothing when
    that vector is already the one given (a first use's rebuild from SQL read it)."""
    held_labels = _ids_of(held.index)
    held_seqs = held_labels & _SEQ_MASK
    present = np.isin(ids, held_seqs)
    if not present.any():
        return ids, matrix
    labels = ids.copy()
    keep = np.ones(len(ids), dtype=bool)
    for at in np.flatnonzero(present).tolist():
        seq = int(ids[at])
        last = held.labels.get(seq, seq)
        if last is None:  # removed, then its row number came back (SQLite may reuse the last)
            last = int(held_labels[held_seqs == seq].max())
        elif np.allclose(held.index.reconstruct(last), matrix[at], atol=1e-6):
            keep[at] = False
            continue
        else:
            held.tombstones += 1
        labels[at] = ((last >> _GEN) + 1) << _GEN | seq
        held.labels[seq] = int(labels[at])
        held.changes += 1
    return labels[keep], matrix[keep]


def _loaded(index: faiss.Index) -> _Tenant:
    """A saved index's state: each row's newest generation is its current label."""
    if not _is_hnsw(index):
        return _Tenant(index, hnsw=False)
    labels = _ids_of(index)
    moved = labels[labels > _SEQ_MASK]
    newest: dict[int, int | None] = {}
    for label in sorted(moved.tolist()):
        newest[label & _SEQ_MASK] = label
    return _Tenant(index, hnsw=True, labels=newest, tombstones=len(moved))


def _ids_of(index: faiss.Index) -> np.ndarray:
    # IndexIDMap2's own attribute; faiss's stubs lack it.
    id_map = index.id_map  # type: ignore[attr-defined]
    return np.asarray(faiss.vector_to_array(id_map))


def _is_hnsw(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return isinstance(inner, faiss.IndexHNSW)


def _key(prefix: str, tenant_id: str | None) -> str:
    return f"{prefix}/{tenant_id or 'anonymous'}/faiss.index"


async def _read(blobs: BlobStore, key: str) -> bytes | None:
    try:
        return b"".join([chunk async for chunk in blobs.get(key)])
    except KeyError:
        return None
