"""The tables of the Files and Uploads APIs (migration 0005): what each stored blob is and whose.

Every row carries its tenant (each query filters by it), the key that made it (`created_by`) and
the end user a trusted proxy named (`user`), for the retention and erasure-by-user work.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.models import Base


class OwnedColumns:
    """Who a stored object belongs to."""

    tenant_id: Mapped[str] = mapped_column(String(40), nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class StoredFile(OwnedColumns, Base):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_files_status", "status"),
        Index("ix_files_expires", "expires_at"),
        Index("ix_files_user", "tenant_id", "user"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    filename: Mapped[str] = mapped_column(String(512), nullable=False)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    blob_key: Mapped[str] = mapped_column(String(300), nullable=False)
    # uploading (its blob being written), processed (served), deleting (a tombstone: its blob is
    # being deleted, then the row). Only processed files are seen through the API.
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Upload(OwnedColumns, Base):
    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_tenant", "tenant_id", "created_at"),
        Index("ix_uploads_status", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    filename: Mapped[str] = mapped_column(String(512), nullable=False)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    # What the client declared; the parts must add up to it.
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mime_type: Mapped[str] = mapped_column(String(255), nullable=False)
    # pending, completing (its parts being joined), completed, cancelled, expired (swept)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    # The file's own expiry, asked for at creation (expires_after.seconds).
    file_expires_after_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class UploadPart(OwnedColumns, Base):
    __tablename__ = "upload_parts"
    __table_args__ = (Index("ix_upload_parts_upload", "upload_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    blob_key: Mapped[str] = mapped_column(String(300), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
