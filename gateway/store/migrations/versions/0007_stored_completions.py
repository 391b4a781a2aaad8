"""Stored chat completions (`store: true`): the first of the stateful APIs' owned objects, with
their owner (tenant), creator (key), end user and metadata (gateway/store/owned.py).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(160), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
    )
    op.create_index("ix_stored_completions_tenant_time", "stored_completions", ["tenant_id", "created_at"])
    op.create_index("ix_stored_completions_created_by", "stored_completions", ["created_by"])
    op.create_index("ix_stored_completions_end_user", "stored_completions", ["end_user"])


def downgrade() -> None:
    op.drop_table("stored_completions")
