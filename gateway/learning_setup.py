"""The learning loop built from the components (docs/fine-tuning.md "The learning loop"): its job
kinds registered, its alias resolution handed to the adapters' serving, and its admin routes."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.components import Components
from gateway.http.client_address import TrustedProxies
from gateway.routes.learning_admin import learning_admin_router
from gateway.services.feedback_export import FileWriter
from gateway.services.learning_loop import LearningLoop, LoopOptions
from gateway.store.feedback import FeedbackStore
from gateway.store.fine_tuning import FineTuningStore
from gateway.store.learning import LearningStore


def learning(parts: Components) -> LearningLoop | None:
    """None with TANTRA_LEARNING_LOOP_ENABLED off, or without fine-tuning, feedback or the Files API."""
    settings, storage = parts.settings, parts.storage
    if not settings.learning_loop_enabled or parts.fine_tuning is None or parts.feedback is None:
        return None
    if storage is None or storage.objects is None:
        return None
    database = parts.shared.database
    options = LoopOptions(
        interval_s=settings.learning_loop_interval_s,
        poll_s=settings.jobs_poll_s,
        max_tokens=settings.learning_loop_max_tokens,
    )
    loop = LearningLoop(
        LearningStore(database),
        FeedbackStore(database),
        FileWriter(storage.objects, storage.blobs),
        FineTuningStore(parts.shared.jobs.queue.db),
        parts.shared.jobs,
        options,
    )
    loop.register()
    parts.fine_tuning.adapters.use_aliases(loop.resolve_alias)
    return loop


def include_learning(app: FastAPI, parts: Components, loop: LearningLoop) -> None:
    # Its training jobs and held-out answers are requests of this app, made in process as the
    # policy's key.
    loop.bind(app)
    bases = set(parts.settings.fine_tuning_base_models)
    proxies = TrustedProxies(parts.settings.trusted_proxies)
    app.include_router(
        learning_admin_router(parts.access.admin_guard, loop, parts.shared.store, bases, proxies)
    )
