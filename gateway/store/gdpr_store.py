"""The GDPR jobs' SQL: every registry kind's export and erasure on one session each, the sweep that
looks again through every table with a tenant or user column (not only the registry's kinds: a
table the registry forgot is found here), and the erasure's audit entry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Update, func, or_, select, update

from gateway.store.database import Database
from gateway.store.gdpr import USER_COLUMNS, DataKind, Erased, Subject
from gateway.store.gdpr_special import REGISTRY
from gateway.store.job_rows import JobRow
from gateway.store.models import AuditEvent, Base
from gateway.store.records import AuditContext
from gateway.store.retention import CHUNK

# Tables whose rows of an erased tenant stay, checked by their kind's own `remaining` instead:
# the ledger (pseudonymised) and the keys (revoked, their secrets gone).
KEPT_FOR_TENANT = frozenset({"usage", "api_keys"})


class GdprStore:
    def __init__(self, database: Database, registry: tuple[DataKind, ...] = REGISTRY) -> None:
        self.db = database
        self.registry = registry

    async def export(self, kind: DataKind, subject: Subject) -> dict[str, list[dict[str, Any]]]:
        async with self.db.session() as session:
            return await kind.export(session, subject)

    async def erase(
        self, kind: DataKind, subject: Subject, before_commit: Callable[[Erased], Awaitable[None]]
    ) -> Erased:
        """Every chunk of one kind: `before_commit` removes a chunk's blobs before its rows go (a
        crash in between leaves rows the retried job erases again, never a row-less blob)."""
        total = Erased()
        while True:
            async with self.db.session() as session:
                erased = await kind.erase(session, subject)
                await before_commit(erased)
                await session.commit()
            total.rows += erased.rows
            total.blob_keys += erased.blob_keys
            total.blob_prefixes += erased.blob_prefixes
            for tenant_id, seqs in erased.vectors.items():
                total.vectors.setdefault(tenant_id, []).extend(seqs)
            if erased.rows < CHUNK:
                return total

    async def remaining(self, subject: Subject) -> dict[str, int]:
        """Per registry kind, the rows still naming the subject (its own test of erased)."""
        async with self.db.session() as session:
            return {kind.name: await kind.remaining(session, subject) for kind in self.registry}

    async def scan(self, subject: Subject) -> dict[str, int]:
        """Per table with a tenant column (and, for a user, a user column), the rows naming the
        subject: the sweep's look at the schema itself, whatever the registry says."""
        found: dict[str, int] = {}
        async with self.db.session() as session:
            for table in Base.metadata.sorted_tables:
                query = _naming(table, subject)
                if query is not None:
                    found[table.name] = int(await session.scalar(query) or 0)
        return found

    async def audit(
        self, action: str, subject: Subject, details: dict[str, Any], audit: AuditContext, at: datetime
    ) -> None:
        async with self.db.session() as session:
            session.add(
                AuditEvent(
                    created_at=at,
                    actor=audit.actor,
                    action=action,
                    target_type="tenant",
                    target_id=subject.tenant_id,
                    request_id=audit.request_id,
                    client_ip=audit.client_ip,
                    details=details,
                )
            )
            await session.commit()


def _naming(table: Table, subject: Subject) -> Any:
    if "tenant_id" not in table.c:
        return None
    count = select(func.count()).select_from(table).where(table.c.tenant_id == subject.tenant_id)
    if subject.user is None:
        return None if table.name in KEPT_FOR_TENANT else count
    named = [table.c[column] == subject.user for column in USER_COLUMNS if column in table.c]
    return count.where(or_(*named)) if named else None


def scrub_payload(job_id: str, payload: dict[str, Any]) -> Update:
    """A finished erasure's job row, its payload rewritten (the user's name gone)."""
    return update(JobRow).where(JobRow.id == job_id).values(payload=payload)
