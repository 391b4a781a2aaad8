"""Builders of the stateful APIs' services from the settings (stored chat completions, conversations, memory;
the files, batches and responses services belong here too), kept out of the composition root's module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from gateway.admission import Admission
from gateway.blobs import LocalBlobStore
from gateway.file_storage import FileStorage
from gateway.jobs import JobRunner
from gateway.limits.accounting import Accountant
from gateway.memory.backends import vector_index
from gateway.memory.graph import GraphStore, KuzuGraph, Neo4jGraph
from gateway.memory.index import Vector, from_bytes
from gateway.memory.scope_cache import ScopeCache
from gateway.services.adapters import AdapterServing
from gateway.services.batch_work import BatchOptions, BatchWork
from gateway.services.batches import KIND, BatchesService
from gateway.services.conversations import Conversations
from gateway.services.feedback import FeedbackService
from gateway.services.feedback_export import FileWriter
from gateway.services.feedback_sources import FeedbackSources
from gateway.services.fine_tuning import KIND as FINE_TUNING
from gateway.services.fine_tuning import Defaults, FineTuningService
from gateway.services.fine_tuning_caps import FineTuningCaps
from gateway.services.fine_tuning_work import FineTuningWork, TrainerOptions
from gateway.services.inference import InferenceService
from gateway.services.memory import MemoryService
from gateway.services.memory_chat import ChatMemory, ChatMemoryOptions
from gateway.services.memory_core import MemoryCore, MemoryOptions
from gateway.services.memory_graph import GraphOptions, MemoryGraph
from gateway.services.memory_responses import ResponsesMemory
from gateway.services.responses import ResponsesService
from gateway.services.responses_background import Background
from gateway.services.stored_completions import StoredCompletions
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.store.batched import BatchedWriter
from gateway.store.batches import BatchStore
from gateway.store.completions import CompletionStore, StoredCompletionRow
from gateway.store.conversations import ConversationStore
from gateway.store.feedback import FeedbackStore
from gateway.store.fine_tuning import FineTuningStore
from gateway.store.memories import MemoryStore
from gateway.store.memory_recalls import RecallStore
from gateway.store.responses import ResponseStore
from gateway.tools_setup import hosted_tools
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.pool import UpstreamPool


def stored_completions(settings: Settings, database: Database, admission: Admission) -> StoredCompletions:
    """The stored chat completions, written in batches on the usage ledger's interval and size."""
    store = CompletionStore(database)

    async def write(rows: Sequence[StoredCompletionRow]) -> None:  # through the service: PII redacted
        await kept.write(rows)

    writer = BatchedWriter(
        write,
        name="stored-completions",
        flush_interval_s=settings.ledger_flush_interval_s,
        batch_size=settings.ledger_batch_size,
    )
    kept = StoredCompletions(admission, store, writer, enabled=settings.stored_completions_enabled)
    return kept


def conversations(database: Database, admission: Admission) -> Conversations:
    """The Conversations API, on the SQL store every replica shares (written in the request)."""
    return Conversations(admission, ConversationStore(database))


def responses_service(
    settings: Settings,
    database: Database,
    admission: Admission,
    jobs: JobRunner,
    dispatcher: Dispatcher,
    catalog: ModelCatalog,
    accountant: Accountant,
    conversations: Conversations | None = None,
) -> ResponsesService:
    """The Responses API: its stored responses and background jobs (registered on the runner here);
    a response given `conversation` reads and appends to it through `conversations`."""
    store = ResponseStore(database)
    background = Background(
        store,
        jobs,
        dispatcher,
        accountant,
        flush_s=settings.responses_events_flush_s,
        poll_s=settings.responses_stream_poll_s,
        conversations=conversations,
    )
    service = ResponsesService(
        admission,
        dispatcher,
        catalog,
        accountant.estimator,
        store,
        background,
        poll_s=settings.responses_stream_poll_s,
        conversations=conversations,
    )
    hosted_tools(settings, service, dispatcher)  # remote MCP tools (gateway/tools_setup.py)
    return service


@dataclass(eq=False)
class Batches:
    """The Batch API's service and the job handler that runs its batches (bound to the app)."""

    service: BatchesService
    work: BatchWork


def batches(settings: Settings, storage: FileStorage | None, runner: JobRunner) -> Batches | None:
    """The Batch API over the Files API's store (none without it), its `batch` job kind registered."""
    if not settings.batches_enabled or storage is None or storage.objects is None:
        return None
    store = BatchStore(runner.queue.db)
    work = BatchWork(
        store,
        storage.objects.files,
        storage.blobs,
        BatchOptions(
            price_factor=settings.batch_price_factor,
            engine_priority=settings.batch_engine_priority,
            lines_per_step=settings.batch_lines_per_step,
            token_quota=settings.batch_token_quota,
        ),
    )
    # Below interactive jobs (background responses) in the claim order; at most batch_concurrency
    # batches at once on a replica.
    runner.register(KIND, work, priority=-10, concurrency=settings.batch_concurrency)
    return Batches(BatchesService(storage.objects, store, runner), work)


@dataclass(eq=False)
class FineTuning:
    """The fine-tuning jobs API, its job handler (registered) and the serving of its models."""

    service: FineTuningService
    adapters: AdapterServing


def fine_tuning(
    settings: Settings,
    storage: FileStorage | None,
    runner: JobRunner,
    pool: UpstreamPool,
    accountant: Accountant,
) -> FineTuning | None:
    """The fine-tuning API over the Files API's store (none without it), its `fine_tuning` job kind
    registered: at most TANTRA_FINE_TUNING_CONCURRENCY runs per replica (one trainer per host)."""
    if not settings.fine_tuning_enabled or storage is None or storage.objects is None:
        return None
    store = FineTuningStore(runner.queue.db)
    work_dir = Path(settings.fine_tuning_work_dir)
    bases = dict(settings.fine_tuning_base_models)
    policy = settings.policy()
    work = FineTuningWork(
        store,
        storage.objects.files,
        storage.blobs,
        accountant,
        TrainerOptions(
            bases=bases,
            work_dir=work_dir,
            image_bases=frozenset(base for base in bases if "image" in policy.accepts(base)),
            learning_rate=settings.fine_tuning_learning_rate,
            rank=settings.fine_tuning_lora_rank,
            threads=settings.fine_tuning_threads,
            nice=settings.fine_tuning_nice,
            timeout_s=settings.fine_tuning_timeout_s,
            price_factor=settings.fine_tuning_price_factor,
        ),
    )
    # Below batches in the claim order: a training run holds its slot for minutes; a failed run
    # is retried from the start, so two attempts at most.
    runner.register(
        FINE_TUNING, work, priority=-20, concurrency=settings.fine_tuning_concurrency, max_attempts=2
    )
    adapters = AdapterServing(store, storage.blobs, pool, work_dir, settings.fine_tuning_max_loras)
    defaults = Defaults(n_epochs=settings.fine_tuning_epochs, batch_size=settings.fine_tuning_batch_size)
    caps = FineTuningCaps(settings.fine_tuning_max_jobs, settings.fine_tuning_max_models)
    service = FineTuningService(storage.objects, store, runner, lambda: set(bases), defaults, adapters, caps)
    return FineTuning(service, adapters)


def memory(
    settings: Settings,
    database: Database,
    admission: Admission,
    storage: FileStorage | None,
    redis: Redis | None = None,
) -> MemoryService | None:
    """The memory API (docs/memory.md): memories in SQL, their vectors in the settings' backend (FAISS,
    its index files in the Files API's blob store or a local one under blob_dir; Chroma; pgvector);
    with Redis, the scopes' row numbers cached under versions every replica's writes bump."""
    if not settings.memory_enabled:
        return None
    scopes: ScopeCache | None = None
    store = MemoryStore(database)
    if redis is not None:
        scopes = ScopeCache(redis, store.scope_rows)
        store.written = scopes.written

    async def vectors(tenant_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await store.vectors(tenant_id)).items()}

    blobs = storage.blobs if storage is not None else LocalBlobStore(settings.blob_dir)
    index = vector_index(settings, blobs, vectors)
    options = MemoryOptions(
        embedding_model=settings.memory_embedding_model,
        extraction_model=settings.memory_extraction_model or settings.routing.default_model or "",
        extraction_max_tokens=settings.memory_extraction_max_tokens,
        dedupe_threshold=settings.memory_dedupe_threshold,
    )
    core = MemoryCore(store, index, options)
    core.scopes = scopes
    if settings.memory_graph_enabled:
        directory = (
            Path(settings.memory_graph_dir)
            if settings.memory_graph_dir
            else settings.blob_dir / "memory-graph"
        )
        graph_options = GraphOptions(
            extraction_model=options.extraction_model,
            max_tokens=settings.memory_extraction_max_tokens,
            on_plain_add=settings.memory_graph_on_plain_add,
            search_default=settings.memory_graph_search,
            hops=settings.memory_graph_hops,
        )
        graph: GraphStore = Neo4jGraph(settings.graph_url()) if settings.graph_url() else KuzuGraph(directory)
        core.graph = MemoryGraph(graph, graph_options)
    return MemoryService(admission, core)


def chat_memory(settings: Settings, service: MemoryService, runner: JobRunner) -> ChatMemory:
    """Memory in chat over the memory API's core; its `memory-extract` job kind registered."""
    options = ChatMemoryOptions(
        default_on=settings.memory_chat_default,
        top_k=settings.memory_chat_top_k,
        token_budget=settings.memory_chat_token_budget,
        min_score=settings.memory_chat_min_score,
        extract=settings.memory_chat_extract,
    )
    # What each request recalled is kept for the panel's memory page (gateway/store/memory_recalls.py).
    return ChatMemory(service.core, runner, options, RecallStore(service.core.store.db))


def wire_memory(
    settings: Settings,
    service: MemoryService | None,
    runner: JobRunner,
    inference: InferenceService,
    responses: ResponsesService,
) -> None:
    """Memory in chat and in the Responses API (when the memory API is served), one `ChatMemory` for
    both (its recall, options and extraction job): the Responses API places at create and extracts
    after the answer (a background response's at the end of its job; docs/memory.md, "Memory in
    responses")."""
    if service is None:
        return
    chat = chat_memory(settings, service, runner)
    inference.memory = chat
    memory = ResponsesMemory(chat)
    responses.memory = memory
    responses.background.memory = memory


def feedback(
    settings: Settings, database: Database, admission: Admission, storage: FileStorage | None
) -> FeedbackService | None:
    """/v1/feedback over the stored completions', responses' and conversations' tables; its export
    writes through the Files API (a 400 without it)."""
    if not settings.feedback_enabled:
        return None
    sources = FeedbackSources(CompletionStore(database), ResponseStore(database), ConversationStore(database))
    writer = FileWriter(storage.objects, storage.blobs) if storage and storage.objects else None
    return FeedbackService(admission, FeedbackStore(database), sources, writer)
