"""What the Files and Uploads services share: one admission for the stored-object endpoints (no model,
no tokens: the key's and tenant's request rate and concurrency), whose objects they are, the tenant's
storage quota, and OpenAI's shapes and errors for them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.admission import Admission, Ticket
from gateway.errors import APIError, NotFound, PayloadTooLarge
from gateway.limits import Estimate
from gateway.protocol.files import FileObject
from gateway.store import FileStore, Owner
from gateway.store.file_models import StoredFile

# Whose objects a gateway without authentication stores (TANTRA_AUTH_ENABLED=false).
ANONYMOUS_TENANT = "anonymous"


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int
    max_upload_bytes: int
    max_part_bytes: int
    # 0: no quota.
    quota_bytes: int


class StorageQuotaExceeded(PayloadTooLarge):
    code = "storage_quota_exceeded"


def no_such(kind: str, object_id: str) -> NotFound:
    """OpenAI's 404 for an id that is not there, or is another tenant's (never a 403 that confirms it)."""
    return NotFound(f"No such {kind} object: {object_id}", param="id")


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.replace(tzinfo=UTC).timestamp())


def file_object(row: StoredFile) -> FileObject:
    created = unix(row.created_at)
    assert created is not None
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=created,
        expires_at=unix(row.expires_at),
        filename=row.filename,
        purpose=row.purpose,
    )


def answer(ticket: Ticket, body: dict[str, object], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=ticket.limit_headers)


class StoredObjects:
    """The admission, store, quota and owner of the stored-object endpoints."""

    def __init__(
        self,
        admission: Admission,
        files: FileStore,
        limits: FileLimits,
        user_of: Callable[[Request], str | None] = lambda _: None,
    ) -> None:
        self.admission = admission
        self.files = files
        self.limits = limits
        self._user_of = user_of

    @contextlib.asynccontextmanager
    async def enter(self, request: Request, endpoint: str) -> AsyncIterator[Ticket]:
        """Authenticated, counted against the key's and tenant's requests per minute and concurrency
        (no tokens), recorded in the ledger with no model."""
        async with self.admission.enter(request, endpoint) as ticket:
            await ticket.reserve(Estimate(0, 0, 0))
            yield ticket

    def owner(self, ticket: Ticket) -> Owner:
        principal = ticket.principal
        return Owner(
            tenant_id=principal.tenant_id or ANONYMOUS_TENANT,
            created_by=principal.key_id,
            user=self._user_of(ticket.request),
        )

    async def cap(self, tenant_id: str, now: datetime, largest: int) -> tuple[int, Callable[[], APIError]]:
        """The most bytes the tenant's next object may hold (`largest`, or what its quota leaves),
        and the error for passing it."""
        quota = self.limits.quota_bytes
        if quota:
            left = max(quota - await self.files.stored_bytes(tenant_id, now), 0)
            if left < largest:
                return left, lambda: quota_exceeded(quota, left)
        return largest, lambda: PayloadTooLarge(
            f"The file is larger than the limit of {largest} bytes.", param="file", code="file_too_large"
        )


def quota_exceeded(quota: int, left: int) -> StorageQuotaExceeded:
    return StorageQuotaExceeded(
        f"The upload would pass your organization's storage quota of {quota} bytes ({left} bytes are "
        "left): delete files you no longer need.",
        param="file",
    )
