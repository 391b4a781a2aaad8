"""Builders of the stateful APIs' services from the settings (stored chat completions, conversations;
the files, batches and responses services belong here too), kept out of the composition root's module."""

from __future__ import annotations

from gateway.admission import Admission
from gateway.jobs import JobRunner
from gateway.limits.accounting import Accountant
from gateway.services.conversations import Conversations
from gateway.services.responses import ResponsesService
from gateway.services.responses_background import Background
from gateway.services.stored_completions import StoredCompletions
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.store.batched import BatchedWriter
from gateway.store.completions import CompletionStore
from gateway.store.conversations import ConversationStore
from gateway.store.responses import ResponseStore
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher


def stored_completions(settings: Settings, database: Database, admission: Admission) -> StoredCompletions:
    """The stored chat completions, written in batches on the usage ledger's interval and size."""
    store = CompletionStore(database)
    writer = BatchedWriter(
        store.add,
        name="stored-completions",
        flush_interval_s=settings.ledger_flush_interval_s,
        batch_size=settings.ledger_batch_size,
    )
    return StoredCompletions(admission, store, writer, enabled=settings.stored_completions_enabled)


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
    return ResponsesService(
        admission,
        dispatcher,
        catalog,
        accountant.estimator,
        store,
        background,
        poll_s=settings.responses_stream_poll_s,
        conversations=conversations,
    )
