"""The Batch API's settings (docs/batches.md): whether /v1/batches is served, what batch usage
costs next to interactive usage, and how batch lines ask the engine to rank them.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class BatchesFields(BaseModel):
    """Batches run as durable jobs (docs/jobs.md); each line is a request of the gateway's own
    endpoint, made in process as the key that created the batch."""

    batches_enabled: bool = Field(
        True, description="Serve /v1/batches (needs the Files API: TANTRA_FILES_ENABLED)."
    )
    # OpenAI bills batch usage at half price; the factor multiplies each batch line's ledger cost.
    batch_price_factor: float = Field(
        0.5,
        ge=0.0,
        le=10.0,
        description="What a batch line costs in the ledger, as a fraction of the same request's "
        "interactive price (OpenAI's batch discount is 0.5).",
    )
    # vLLM 0.32 takes `priority` on any engine (tested) and orders by it only under
    # `--scheduling-policy priority`, which engine/launcher.py (make run, compose, Helm) starts
    # generation engines with; `openai`-kind upstreams (providers) never receive the field.
    batch_engine_priority: int = Field(
        10,
        description="vLLM `priority` set on each batch line that does not carry its own (lower runs "
        "first; interactive requests have 0). 0: not sent. It orders lines on engines started with "
        "`--scheduling-policy priority` (the launcher's default; fcfs engines ignore it); it is "
        "removed from requests to `openai`-kind upstreams.",
    )
    batch_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Batches one replica runs at once (their lines still share TANTRA_JOBS_REQUEST_SLOTS).",
    )
    # OpenAI's "enqueued tokens" limit: keys and tenants set their own (`batch_tokens`, admin API).
    batch_token_quota: int = Field(
        0,
        ge=0,
        description="Input tokens the batches of one key may have enqueued at once (not yet ended), "
        "for keys without their own `batch_tokens`; a batch going over fails with "
        "token_limit_exceeded. 0: unlimited.",
    )
    batch_lines_per_step: int = Field(
        8,
        ge=1,
        le=256,
        description="Lines a batch sends at once and commits with one checkpoint.",
    )
