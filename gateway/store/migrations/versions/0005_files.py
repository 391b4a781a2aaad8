"""The Files and Uploads APIs' tables: files, uploads and their parts, each with its tenant, the key
that made it and the end user.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _owner() -> list[sa.Column]:
    return [
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("user", sa.String(256), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        *_owner(),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("blob_key", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_files_tenant_created", "files", ["tenant_id", "created_at", "id"])
    op.create_index("ix_files_status", "files", ["status"])
    op.create_index("ix_files_expires", "files", ["expires_at"])
    op.create_index("ix_files_user", "files", ["tenant_id", "user"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(40), primary_key=True),
        *_owner(),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("file_expires_after_s", sa.Integer(), nullable=True),
        sa.Column("file_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_uploads_tenant", "uploads", ["tenant_id", "created_at"])
    op.create_index("ix_uploads_status", "uploads", ["status", "expires_at"])
    op.create_table(
        "upload_parts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "upload_id", sa.String(40), sa.ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False
        ),
        *_owner(),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("blob_key", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_upload_parts_upload", "upload_parts", ["upload_id", "created_at"])


def downgrade() -> None:
    op.drop_table("upload_parts")
    op.drop_table("uploads")
    op.drop_table("files")
