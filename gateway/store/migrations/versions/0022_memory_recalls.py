"""Memory recalls: what memory in chat retrieved and placed per request (gateway/store/memory_recalls.py).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memory_recalls",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("request_id", sa.String(160), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("found", sa.JSON(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
    )
    op.create_index("ix_memory_recalls_tenant_request", "memory_recalls", ["tenant_id", "request_id"])
    op.create_index("ix_memory_recalls_tenant_user", "memory_recalls", ["tenant_id", "end_user"])
    op.create_index("ix_memory_recalls_created_by", "memory_recalls", ["created_by"])


def downgrade() -> None:
    op.drop_table("memory_recalls")
