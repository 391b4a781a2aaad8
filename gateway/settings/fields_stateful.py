"""The stored chat completions' and the Responses API's settings (docs/stored-completions.md,
docs/responses.md).

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class StatefulFields(BaseModel):
    """What the stateful APIs built on the SQL store keep, and how often background responses'
    events are written and read."""

    # Stored chat completions (`store: true`, docs/stored-completions.md): written in batches as the
    # ledger's rows are, on the ledger's interval and batch size.
    stored_completions_enabled: bool = Field(
        True,
        description="Keep the chat completions created with `store: true` (listed and read back at "
        "GET /v1/chat/completions). Off: `store` is ignored, as vLLM ignores it, and the list is empty.",
    )

    # The Responses API (docs/responses.md): background responses' events are written by the replica
    # running them every flush interval, and read by any replica streaming them every poll interval.
    responses_events_flush_s: float = Field(
        0.2,
        gt=0,
        description="How often a background response's job writes the stream events it has produced "
        "(each batch one commit, with the job's checkpoint).",
    )
    responses_stream_poll_s: float = Field(
        0.2,
        gt=0,
        description="How often a stream of a background response (background with `stream`, or "
        "GET /v1/responses/{id}?stream=true) reads the store for its next events.",
    )
