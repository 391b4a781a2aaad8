"""Vector stores (OpenAI's API): the stores, their files, file batches and chunks, each row with its
owner (tenant), creator (key) and end user (gateway/store/vector_stores.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _owned() -> list[sa.Column]:
    return [
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
    ]


def _owner() -> list[sa.Column]:
    return [
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("vector_store_id", sa.String(160), nullable=False),
        sa.Column("file_id", sa.String(160), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "vector_stores",
        *_owned(),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("expires_after_days", sa.Integer(), nullable=True),
        sa.Column("last_active_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_vector_stores_tenant_created", "vector_stores", ["tenant_id", "created_at"])
    op.create_index("ix_vector_stores_created_by", "vector_stores", ["created_by"])
    op.create_index("ix_vector_stores_end_user", "vector_stores", ["end_user"])
    op.create_table(
        "vector_store_files",
        *_owner(),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("chunking", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("usage_bytes", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.String(160), nullable=True),
    )
    op.create_index(
        "ix_vector_store_files_store", "vector_store_files", ["vector_store_id", "file_id"], unique=True
    )
    op.create_index("ix_vector_store_files_batch", "vector_store_files", ["batch_id"])
    op.create_index("ix_vector_store_files_created_by", "vector_store_files", ["created_by"])
    op.create_index("ix_vector_store_files_end_user", "vector_store_files", ["end_user"])
    op.create_table(
        "vector_store_file_batches",
        *_owned(),
        sa.Column("vector_store_id", sa.String(160), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_vector_store_file_batches_store", "vector_store_file_batches", ["vector_store_id"])
    op.create_index("ix_vector_store_file_batches_created_by", "vector_store_file_batches", ["created_by"])
    op.create_index("ix_vector_store_file_batches_end_user", "vector_store_file_batches", ["end_user"])
    op.create_table(
        "vector_store_chunks",
        *_owner(),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_vector_store_chunks_file", "vector_store_chunks", ["vector_store_id", "file_id"])
    op.create_index("ix_vector_store_chunks_created_by", "vector_store_chunks", ["created_by"])
    op.create_index("ix_vector_store_chunks_end_user", "vector_store_chunks", ["end_user"])


def downgrade() -> None:
    for table in ("vector_store_chunks", "vector_store_file_batches", "vector_store_files", "vector_stores"):
        op.drop_table(table)
