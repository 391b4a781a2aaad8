"""The vector stores API and the Responses API's file_search tool built from the settings (a builder
of the composition root, gateway/components.py; docs/memory.md, "Vector stores and file search")."""

from __future__ import annotations

from gateway.file_storage import FileStorage
from gateway.jobs import JobRunner
from gateway.memory.backends import vector_index
from gateway.memory.index import Vector, from_bytes
from gateway.services.file_search import FileSearch
from gateway.services.memory import MemoryService
from gateway.services.memory_chat import ChatMemory
from gateway.services.responses import ResponsesService
from gateway.services.vector_core import ATTEMPTS, KIND, VectorCore, VectorOptions
from gateway.services.vector_stores import VectorStoresService
from gateway.settings.schema import Settings
from gateway.store.vector_stores import VectorStoreStore
from gateway.tools_setup import offline_web_search


def vector_stores(
    settings: Settings, storage: FileStorage | None, runner: JobRunner, responses: ResponsesService
) -> VectorStoresService | None:
    """The vector stores over the Files API's store (none without it): the `vector-store-file` job
    kind registered, and the file_search tool handed to the Responses API."""
    if not settings.vector_stores_enabled or storage is None or storage.objects is None:
        return None
    store = VectorStoreStore(runner.queue.db)

    async def vectors(store_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await store.vectors(store_id)).items()}

    # One index per vector store (keyed by its id) on the memory's backend: with FAISS flat up to
    # its HNSW threshold, with Chroma a collection per store, with pgvector a table of its own.
    index = vector_index(settings, storage.blobs, vectors, kind="vector-store")
    options = VectorOptions(
        embedding_model=settings.vector_stores_embedding_model or settings.memory_embedding_model,
        embed_batch=settings.vector_stores_embed_batch,
    )
    core = VectorCore(store, storage.objects.files, storage.blobs, index, runner, options)
    # Between background responses (0) and batches (-10) in the claim order; a crash retries a file.
    runner.register(
        KIND, core, priority=-5, concurrency=settings.vector_stores_concurrency, max_attempts=ATTEMPTS
    )
    service = VectorStoresService(storage.objects, core)
    # A deleted file leaves every store holding it, whichever path deletes it (the API's DELETE,
    # the sweeper finishing a tombstone or an expiry; retention and GDPR: gateway/governance.py).
    storage.files.forget = storage.sweeper.forget = core.forget_files
    responses.file_search = FileSearch(service)
    offline_web_search(settings, responses, service)  # web_search's default provider (tools_setup.py)
    return service


async def close_memory(
    memory: MemoryService | None, stores: VectorStoresService | None, chat: ChatMemory | None = None
) -> None:
    """At shutdown: the chat memory's recall records under way written (before the database
    closes), then a shared backend's connections (pgvector's pool, Chroma's client) closed."""
    if chat is not None:
        await chat.settle()
    for index in (memory.core.index if memory else None, stores.core.index if stores else None):
        if index is not None:
            await index.close()
