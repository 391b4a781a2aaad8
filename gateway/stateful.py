"""Builders of the stateful APIs' services from the settings (stored chat completions, conversations;
the files, batches and responses services belong here too), kept out of the composition root's module."""

from __future__ import annotations

from gateway.admission import Admission
from gateway.services.conversations import Conversations
from gateway.services.stored_completions import StoredCompletions
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.store.batched import BatchedWriter
from gateway.store.completions import CompletionStore
from gateway.store.conversations import ConversationStore


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
