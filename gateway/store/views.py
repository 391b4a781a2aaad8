"""The admin API's JSON views of stored rows: the store hands these out, so routes never see ORM
models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.store.models import ApiKey, AuditEvent, Tenant
from gateway.store.records import Limits


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "disabled": tenant.disabled,
        "created_at": iso(tenant.created_at),
        "updated_at": iso(tenant.updated_at),
        "limits": Limits.of(tenant).as_dict(),
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    now = datetime.now(UTC).replace(tzinfo=None)
    if key.revoked_at is not None:
        state = "revoked"
    elif key.expires_at is not None and key.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "id": key.id,
        "object": "api_key",
        "tenant_id": key.tenant_id,
        "name": key.name,
        "redacted": key.redacted,
        "status": state,
        "created_at": iso(key.created_at),
        "updated_at": iso(key.updated_at),
        "rotated_at": iso(key.rotated_at),
        "previous_valid_until": iso(key.previous_valid_until),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "limits": Limits.of(key).as_dict(),
    }


def audit_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": iso(event.created_at),
        "actor": event.actor,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "details": event.details,
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None
