"""Plain values the store hands out, so callers never hold ORM objects or sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

BudgetPeriod = Literal["day", "month"]
LIMIT_FIELDS = (
    "allowed_models",
    "rpm",
    "tpm",
    "audio_spm",
    "max_concurrent",
    "budget_tokens",
    "budget_usd",
    "budget_period",
    "batch_tokens",
    "memory",
    "fine_tuning_jobs",
    "fine_tuning_models",
)


@dataclass(frozen=True)
class Limits:
    """What one tenant or one key may do; None means no limit at that level."""

    allowed_models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    # Seconds of audio heard (transcribed) per window.
    audio_spm: int | None = None
    max_concurrent: int | None = None
    budget_tokens: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "month"
    # Input tokens of batches not yet ended (OpenAI's "enqueued tokens"; docs/batches.md).
    batch_tokens: int | None = None
    # Memory in chat and responses (docs/memory.md): on, off, or None (the tenant's, then the
    # operator's default).
    memory: bool | None = None
    # Fine-tuning jobs active at once and fine-tuned models kept (docs/fine-tuning.md); None: the
    # operator's TANTRA_FINE_TUNING_MAX_JOBS / _MAX_MODELS.
    fine_tuning_jobs: int | None = None
    fine_tuning_models: int | None = None

    @classmethod
    def of(cls, row: Any) -> Limits:
        models = row.allowed_models
        return cls(
            allowed_models=tuple(models) if models is not None else None,
            rpm=row.rpm,
            tpm=row.tpm,
            audio_spm=row.audio_spm,
            max_concurrent=row.max_concurrent,
            budget_tokens=row.budget_tokens,
            budget_usd=row.budget_usd,
            budget_period=row.budget_period or "month",
            batch_tokens=row.batch_tokens,
            memory=row.memory,
            fine_tuning_jobs=row.fine_tuning_jobs,
            fine_tuning_models=row.fine_tuning_models,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "audio_spm": self.audio_spm,
            "max_concurrent": self.max_concurrent,
            "budget_tokens": self.budget_tokens,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "batch_tokens": self.batch_tokens,
            "memory": self.memory,
            "fine_tuning_jobs": self.fine_tuning_jobs,
            "fine_tuning_models": self.fine_tuning_models,
        }


@dataclass(frozen=True)
class KeyRecord:
    """Everything authentication needs about one key, joined with its tenant."""

    key_id: str
    key_name: str
    tenant_id: str
    tenant_name: str
    key_limits: Limits
    tenant_limits: Limits
    tenant_disabled: bool
    revoked_at: datetime | None
    expires_at: datetime | None
    # Set when the secret matched is the one replaced by a rotation: it works until then.
    superseded_until: datetime | None = None


@dataclass(frozen=True)
class AuditContext:
    """Who made an admin change, recorded with it in the same transaction."""

    actor: str = "admin"
    request_id: str | None = None
    client_ip: str | None = None


@dataclass(frozen=True)
class UsageRow:
    created_at: datetime
    request_id: str
    tenant_id: str | None
    key_id: str | None
    model: str
    endpoint: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    latency_ms: int
    status: int
    outcome: str
    # Seconds of audio heard: a transcription's upload, or a chat request's audio parts.
    audio_seconds: float | None = None
    # A chat request's `usage.tantra_media` (what its media parts used), when it had any.
    media: dict[str, Any] | None = None
    # The model that answered (`model`, or a fallback of it), which `cost_micros` is priced by;
    # None when no upstream answered.
    served_model: str | None = None
    # The client's x-request-id; `request_id` is the gateway's own, unique per request.
    client_request_id: str | None = None
    # The request's end user (`user` or `safety_identifier`), when its body named one.
    end_user: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "key_id": self.key_id,
            "model": self.model,
            "endpoint": self.endpoint,
            "stream": self.stream,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_micros": self.cost_micros,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "outcome": self.outcome,
            "audio_seconds": self.audio_seconds,
            "media": self.media,
            "served_model": self.served_model,
            "client_request_id": self.client_request_id,
            "end_user": self.end_user,
        }
