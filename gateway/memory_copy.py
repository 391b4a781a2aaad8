"""`python -m gateway memory copy --from faiss --to pgvector`: fill a new vector backend before
switching TANTRA_MEMORY_BACKEND to it (docs/memory.md, "Switching backend").

The vectors' own copy is in SQL (memories.vector, vector_store_chunks.vector); a backend holds an index
of them keyed by row number. So a copy walks every tenant (every vector store with `--kind
vector-store`), asks the source backend which rows it holds, and writes those rows' vectors, read
from SQL, to the target; rows SQL holds that the source had lost are counted, and copied too with
`--all`. The target then answers every search the source answered. Run it with the gateway's own
settings (the database, the blob store of FAISS's files, the Chroma and pgvector addresses).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, cast

from gateway.blobs import BlobStore, LocalBlobStore
from gateway.file_storage import blob_store
from gateway.memory.backends import Backend, vector_index
from gateway.memory.index import Vector, from_bytes
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.store.memories import MemoryStore
from gateway.store.vector_stores import VectorStoreStore

BACKENDS = ("faiss", "chroma", "pgvector")
Kind = Literal["memory", "vector-store"]


@dataclass
class Copied:
    owners: int = 0  # tenants (vector stores with --kind vector-store) walked
    rows: int = 0  # vectors written to the target
    missing: int = 0  # rows in SQL the source did not hold


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    memory = commands.add_parser("memory", help="memory's vector backends")
    actions = memory.add_subparsers(dest="memory_command", required=True)
    copy = actions.add_parser("copy", help="copy the vectors one backend holds into another")
    copy.add_argument("--from", dest="source", required=True, choices=BACKENDS)
    copy.add_argument("--to", dest="target", required=True, choices=BACKENDS)
    copy.add_argument(
        "--kind", choices=("memory", "vector-store", "all"), default="all", help="default: both"
    )
    copy.add_argument(
        "--all", dest="everything", action="store_true", help="also the rows in SQL the source lacks"
    )


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Copied]:
    if args.source == args.target:
        raise ValueError("--from and --to name the same backend")
    database = Database(settings.database_url)
    blobs = blob_store(settings) if settings.files_enabled else LocalBlobStore(settings.blob_dir)
    await blobs.start()
    kinds: list[Kind] = ["memory", "vector-store"] if args.kind == "all" else [cast(Kind, args.kind)]
    try:
        return {
            kind: await copy(settings, database, blobs, kind, args.source, args.target, args.everything)
            for kind in kinds
        }
    finally:
        await blobs.close()
        await database.close()


async def copy(
    settings: Settings,
    database: Database,
    blobs: BlobStore,
    kind: Kind,
    source: Backend,
    target: Backend,
    everything: bool = False,
) -> Copied:
    """Every owner's rows from `source` into `target` (see the module's docstring)."""
    owners, load = _walk(database, kind)
    vectors: Callable[[str | None], Awaitable[dict[int, Vector]]] = load
    src = vector_index(settings, blobs, vectors, kind=kind, backend=source)
    dst = vector_index(settings, blobs, vectors, kind=kind, backend=target)
    done = Copied()
    try:
        for owner in await owners():
            in_sql = await load(owner)
            held = await src.ids(owner)
            wanted = set(in_sql) if everything else held & set(in_sql)
            done.owners += 1
            done.missing += len(set(in_sql) - held)
            await dst.add(owner, {seq: in_sql[seq] for seq in sorted(wanted)})
            done.rows += len(wanted)
    finally:
        await src.close()
        await dst.close()
    return done


def _walk(
    database: Database, kind: Kind
) -> tuple[Callable[[], Awaitable[list[str | None]]], Callable[[str | None], Awaitable[dict[int, Vector]]]]:
    if kind == "memory":
        memories = MemoryStore(database)

        async def memory_vectors(owner: str | None) -> dict[int, Vector]:
            return {seq: from_bytes(data) for seq, data in (await memories.vectors(owner)).items()}

        return memories.tenants, memory_vectors
    stores = VectorStoreStore(database)

    async def store_ids() -> list[str | None]:
        return list(await stores.indexed())

    async def store_vectors(owner: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await stores.vectors(owner)).items()}

    return store_ids, store_vectors
