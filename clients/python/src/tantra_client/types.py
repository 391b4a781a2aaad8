"""Typed views of Tantra's own answers and request bodies (gateway/routes/admin.py, operations.py).

Answers allow unknown fields (a newer gateway may add some); request bodies are checked against the
gateway's OpenAPI description by tests/clients/test_python_openapi_drift.py, which fails on drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def payload(self) -> dict[str, Any]:
        """Only the fields set by the caller: on PATCH an explicit None removes a limit."""
        return self.model_dump(mode="json", exclude_unset=True)


class Limits(_Answer):
    allowed_models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    audio_spm: int | None = None
    max_concurrent: int | None = None
    budget_tokens: int | None = None
    budget_usd: float | None = None
    budget_period: Literal["day", "month"] = "month"
    # Input tokens of batches not yet ended (OpenAI's enqueued tokens; docs/batches.md).
    batch_tokens: int | None = None
    # Memory in chat for requests naming an end user; None: the tenant's, then the default.
    memory: bool | None = None
    # Fine-tuning jobs running or queued at once, and fine-tuned models kept (docs/fine-tuning.md).
    fine_tuning_jobs: int | None = None
    fine_tuning_models: int | None = None


class Tenant(_Answer):
    id: str
    object: Literal["tenant"] = "tenant"
    name: str
    disabled: bool
    created_at: str | None = None
    updated_at: str | None = None
    limits: Limits


class ApiKey(_Answer):
    id: str
    object: Literal["api_key"] = "api_key"
    tenant_id: str
    name: str
    redacted: str
    status: Literal["active", "expired", "revoked"]
    created_at: str | None = None
    updated_at: str | None = None
    rotated_at: str | None = None
    previous_valid_until: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    limits: Limits
    key: str | None = Field(None, description="The secret: only in the answer to create and rotate.")


class AuditEvent(_Answer):
    id: int
    created_at: str | None = None
    actor: str
    action: str
    target_type: str | None = None
    target_id: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] | None = None


class UsageReport(_Answer):
    object: Literal["list"] = "list"
    group_by: list[str]
    data: list[dict[str, Any]] = Field(description="One row per group: its ids and the totals.")


class UpstreamState(_Answer):
    url: str
    kind: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    last_failure: str | None = None
    outstanding: int
    max_outstanding: int | None = None
    open_for_s: float | None = None
    models: list[str]


class UpstreamHealth(_Answer):
    upstreams: dict[str, UpstreamState]
    draining: bool


# Request bodies: the same fields as the gateway's TenantCreate, KeyCreate, ... (checked by a test).


class _LimitFields(_Body):
    allowed_models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    audio_spm: int | None = None
    max_concurrent: int | None = None
    budget_tokens: int | None = None
    budget_usd: float | None = None
    budget_period: Literal["day", "month"] | None = None
    batch_tokens: int | None = None
    memory: bool | None = None
    fine_tuning_jobs: int | None = None
    fine_tuning_models: int | None = None


class TenantCreate(_LimitFields):
    name: str
    disabled: bool | None = None


class TenantUpdate(_LimitFields):
    name: str | None = None
    disabled: bool | None = None


class KeyCreate(_LimitFields):
    tenant_id: str
    name: str | None = None
    expires_at: datetime | None = None


class KeyUpdate(_LimitFields):
    name: str | None = None
    expires_at: datetime | None = None


class KeyRotate(_Body):
    grace_seconds: float | None = None
