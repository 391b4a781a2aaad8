"""The vector stores' tables (migration 0020; their reads and writes: vector_stores.py): the stores,
the files attached to them, their file batches and the chunks a file was cut into."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns


class StoredVectorStore(OwnedColumns, Base):
    """One vector store (migration 0020)."""

    __tablename__ = "vector_stores"
    __table_args__ = (
        Index("ix_vector_stores_tenant_created", "tenant_id", "created_at"),
        Index("ix_vector_stores_created_by", "created_by"),
        Index("ix_vector_stores_end_user", "end_user"),
    )

    name: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_active_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class StoredVectorStoreFile(Base):
    """A file attached to a vector store, its ingestion status and its attributes."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ix_vector_store_files_store", "vector_store_id", "file_id", unique=True),
        Index("ix_vector_store_files_batch", "batch_id"),
        Index("ix_vector_store_files_created_by", "created_by"),
        Index("ix_vector_store_files_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    file_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    filename: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    last_error: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    batch_id: Mapped[str | None] = mapped_column(String(160), nullable=True)


class StoredFileBatch(OwnedColumns, Base):
    """A file batch: the files it attached carry its id; `cancelled` once cancelled."""

    __tablename__ = "vector_store_file_batches"
    __table_args__ = (
        Index("ix_vector_store_file_batches_store", "vector_store_id"),
        Index("ix_vector_store_file_batches_created_by", "created_by"),
        Index("ix_vector_store_file_batches_end_user", "end_user"),
    )

    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    cancelled: Mapped[bool] = mapped_column(nullable=False, default=False)


class StoredChunk(Base):
    """One chunk of a store file: its text and its embedding; `seq` is its id in the vector index."""

    __tablename__ = "vector_store_chunks"
    __table_args__ = (
        Index("ix_vector_store_chunks_file", "vector_store_id", "file_id"),
        Index("ix_vector_store_chunks_created_by", "created_by"),
        Index("ix_vector_store_chunks_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    file_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
